/* a.h */
int a_f(void);
