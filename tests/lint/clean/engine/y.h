int y_f(void);
