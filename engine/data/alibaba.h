/* data/alibaba.h — Alibaba's released click → conversion datasets, the
 * standard multi-task recommendation benchmarks: Ali-CCP (Ma et al., ESMM,
 * SIGIR 2018; Tianchi dataset 408) and AliExpress (Tianchi dataset 74690).
 * The engine takes their folders as arguments; neither can be downloaded
 * here (see README "Data").
 *
 * Both have tasks click and conversion (binary, in that order); conversion
 * counts only after a click (ESMM's CTCVR label over all impressions): a
 * sample with conversion = 1 and click = 0 is left out and counted as
 * skipped (tl_dataset_skipped, with its line), as the AITM/torch-rechub
 * preprocessing drops them.
 */
#ifndef TL_DATA_ALIBABA_H
#define TL_DATA_ALIBABA_H

#include "data_types.h"

typedef struct {
    const char *dir;      /* the folder holding the files (layouts below) */
    int hash_buckets;     /* > 0: hash every categorical field into this many buckets */
    size_t max_rows;      /* > 0: read at most this many samples from each sample file */
    double valid;         /* share of the test file's samples that go to valid (default 0.5) */
    uint64_t seed;        /* which test samples go to valid (default 1) */
} tl_alibaba_params;

void tl_alibaba_defaults(tl_alibaba_params *p);

/* Ali-CCP from p->dir, in either layout:
 * - the release: sample_skeleton_{train,test}.csv and
 *   common_features_{train,test}.csv (each may be .csv.gz). A sample line is
 *   sample_id,click,conversion,common_feature_index,feature_num,features and
 *   a common line common_feature_index,feature_num,features, where features
 *   are field_id \x02 feature_id \x03 value, separated by \x01. Each sample
 *   is joined with the common features of its index (samples first, then
 *   only the common lines they use are parsed; a common value overrides the
 *   sample's, as in the AITM preprocessing); an index missing from the
 *   common file is an error naming the sample's line.
 * - torch-rechub's preprocessing: ali_ccp_{train,val,test}.csv (or
 *   _sample.csv), header click,purchase,<the 23 fields>,<the 8 D fields>.
 * Features: the 23 categorical fields of the AITM/ESMM protocol (101, 121,
 * 122, 124, 125, 126, 127, 128, 129, 205, 206, 207, 210, 216, 508, 509, 702,
 * 853, 301, 109_14, 110_14, 127_14, 150_14; ids = feature ids, missing when
 * absent, the last one when a field repeats) and 8 numeric D<field> columns,
 * the values of fields 109_14, 110_14, 127_14, 150_14, 508, 509, 702, 853
 * (standardised on train). Splits: the train file is train; the test file
 * (or val and test files) gives valid and test. */
tl_status tl_data_aliccp(const tl_alibaba_params *p, tl_dataset **out);

/* AliExpress (one country) from p->dir: train.csv and test.csv as MTReclib
 * names them (AliExpress_NL/, _ES/, _FR/, _US/), or torch-rechub's
 * aliexpress_{train,test}[_sample].csv. Header search_id (ignored),
 * categorical_1..16, numerical_1..63, click, conversion. The train file is
 * train; the test file is split into valid and test by p->valid, p->seed. */
tl_status tl_data_aliexpress(const tl_alibaba_params *p, tl_dataset **out);

#endif
