#include "demo_network.hpp"
#include "loopgrad/emit/report_main.hpp"

int main(int argc, char** argv) { return loopgrad::emit::report_main(argc, argv, {loopgrad::dsl::lower(demo::network())}); }
