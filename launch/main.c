typedef int ts_wip_;
int main(void) { return 0; }
