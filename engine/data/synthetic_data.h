/* data/synthetic_data.h — the generators of synthetic.h packed as datasets
 * (splits, vocabularies and statistics like any loaded file).
 */
#ifndef TL_DATA_SYNTHETIC_DATA_H
#define TL_DATA_SYNTHETIC_DATA_H

#include "data_types.h"
#include "shards.h"
#include "synthetic.h"

/* The MMoE-paper synthetic data (synthetic.h): dim numeric features x,
 * regression tasks y1 and y2; 8:1:1 split in generation order. */
tl_status tl_data_synthetic(const tl_synthetic_params *p, tl_dataset **out);

/* The user/item task pair of synthetic.h as a dataset: categorical user_id,
 * item_id, user_segment, item_category, context; numeric user_activity,
 * item_price, x (standardised on train); binary tasks a and b; random 8:1:1
 * split by p->seed. */
tl_status tl_data_synthetic_pair(const tl_synth_pair_params *p, tl_dataset **out);

/* The Ali-CCP-shaped stream of synthetic.h written straight into shards in
 * dir: rows[0] train, rows[1] valid, rows[2] test rows (the valid and test
 * rows are rows rows[0].. of the same stream). Layout: the 21 categorical
 * fields, the 3 multi-valued fields (pooling: mean), numeric price and
 * age_days, binary tasks click and purchase. An interrupted run (Ctrl-C:
 * TL_ERR_CANCELLED, or a killed process) resumes where its complete shards
 * end when called again with the same parameters. Rows are made on the
 * engine's worker threads (parallel.h), 65536 at a time, while a thread of
 * its own writes the previous ones. */
tl_status tl_data_synth_ccp_shards(const tl_synth_ccp_params *p, const uint64_t rows[3], const char *dir,
                                   size_t rows_per_shard, tl_shard_progress progress, void *ud);
#endif
