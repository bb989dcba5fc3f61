int r_f(void) __attribute__((weak));
#pragma weak r_g
int r_g(void);
int r_h(void) { return 0; }
