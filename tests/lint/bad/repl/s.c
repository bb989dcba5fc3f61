/* local prototype of a function repl/r.c defines */
int r_h(void);
int s_f(void) { return r_h(); }
