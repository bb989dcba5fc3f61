/* data/synthetic_data.h — the generators of synthetic.h packed as datasets
 * (splits, vocabularies and statistics like any loaded file).
 */
#ifndef TL_DATA_SYNTHETIC_DATA_H
#define TL_DATA_SYNTHETIC_DATA_H

#include "data_types.h"
#include "synthetic.h"

/* The MMoE-paper synthetic data (synthetic.h): dim numeric features x,
 * regression tasks y1 and y2; 8:1:1 split in generation order. */
tl_status tl_data_synthetic(const tl_synthetic_params *p, tl_dataset **out);

/* The user/item task pair of synthetic.h as a dataset: categorical user_id,
 * item_id, user_segment, item_category, context; numeric user_activity,
 * item_price, x (standardised on train); binary tasks a and b; random 8:1:1
 * split by p->seed. */
tl_status tl_data_synthetic_pair(const tl_synth_pair_params *p, tl_dataset **out);

#endif
