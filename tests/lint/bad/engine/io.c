#include "models/m_impl.h"
int io_f(void) { return 0; }
