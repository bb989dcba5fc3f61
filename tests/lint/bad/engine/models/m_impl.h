/* the model internals */
struct m_impl { int x; };
