/* ops/bag.h — the embedding bag (ops/bag.c): a multi-valued field's ids
 * looked up in its table and pooled into one vector per row.
 * Shapes are checked at build time; a failing builder records the message
 * in the graph and returns TL_NONE (graph.h).
 */
#ifndef TL_OPS_BAG_H
#define TL_OPS_BAG_H

#include "graph_types.h"

typedef enum { TL_BAG_SUM = 0, TL_BAG_MEAN, TL_BAG_MAX } tl_bag_pool;

/* ids: an id input (tl_input_ids) of L columns, one row's ids of the field
 * with -1 in unused slots (anywhere in the row); table: a parameter of
 * `vocab` rows (ids 0 .. vocab-1) and D columns, which becomes row-sparse
 * like an embedding table. Output [B x D]: per row the sum, the mean (over
 * the row's ids, not over L) or the element-wise maximum of the rows of its
 * ids; a row with no id gives zeros. The backward adds the output gradient
 * to every id's table row (sum), divided by the row's count (mean), or, per
 * element, to the row that gave the maximum only (max; on a tie, the first
 * slot holding it — the one PyTorch's EmbeddingBag picks as well when the
 * tied ids come in slot order). An id repeated in a row counts each time. An
 * id outside -1 .. vocab-1 fails the forward run with row, slot and id. */
tl_node tl_embedding_bag(tl_graph *g, tl_node table, tl_node ids, tl_bag_pool pool);

#endif
