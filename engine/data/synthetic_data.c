/* data/synthetic_data.c — the synthetic generators of synthetic.h packed as
 * datasets: the MMoE-paper regression pair directly, the user/item task pair
 * through raw rows and finishing like a loaded file.
 */
#include "synthetic_data.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "data_internal.h"
#include "dataset.h"
#include "schema.h"

/* ---- synthetic ------------------------------------------------------------ */

tl_status tl_data_synthetic(const tl_synthetic_params *p, tl_dataset **out)
{
    if (!out) return tl_fail(TL_ERR_ARG, "synthetic: NULL output");
    *out = NULL;
    tl_status st = tl_synthetic_check(p);
    if (st) return st;
    tl_dataset *d = NULL;
    if ((st = tl_data_alloc(&d, 0, p->dim, 2))) goto fail;
    d->n = p->n;
    d->has_splits = 1;
    d->split_n[0] = (size_t)llround(0.8 * (double)p->n);
    d->split_n[1] = (size_t)llround(0.1 * (double)p->n);
    if (d->split_n[0] + d->split_n[1] > p->n) d->split_n[1] = p->n - d->split_n[0];
    d->split_n[2] = p->n - d->split_n[0] - d->split_n[1];
    d->source = tl_strdup("synthetic", "dataset source");
    d->catv = tl_malloc(sizeof(int32_t), "categorical features");
    d->numv = tl_malloc(sizeof(float) * p->n * (size_t)p->dim, "synthetic features");
    d->labv = tl_malloc(sizeof(float) * p->n * 2, "synthetic labels");
    d->row = tl_malloc(sizeof(uint32_t) * p->n, "row indices");
    if (!d->source || !d->catv || !d->numv || !d->labv || !d->row) {
        st = TL_ERR_NOMEM;
        goto fail;
    }
    for (int j = 0; j < p->dim; j++) {
        char nm[32];
        snprintf(nm, sizeof nm, "x%d", j + 1);
        d->num[j].transform = TL_NUM_NONE;
        d->num[j].mean = 0;
        d->num[j].std = 1;
        if (!(d->num[j].name = tl_strdup(nm, "column name"))) {
            st = TL_ERR_NOMEM;
            goto fail;
        }
    }
    for (int t = 0; t < 2; t++) {
        d->task_type[t] = TL_TASK_REGRESSION;
        if (!(d->task_name[t] = tl_strdup(t ? "y2" : "y1", "task name"))) {
            st = TL_ERR_NOMEM;
            goto fail;
        }
    }
    if ((st = tl_synthetic_generate(p, d->numv, d->labv))) goto fail;
    for (size_t i = 0; i < p->n; i++) d->row[i] = (uint32_t)i;
    tl_data_set_views(d);
    *out = d;
    return TL_OK;
fail:
    tl_dataset_free(d);
    return st;
}

/* The user/item task pair (synthetic.h): categorical user_id, item_id,
 * user_segment, item_category, context; numeric user_activity, item_price, x
 * (standardised on train); tasks a and b; random 8:1:1 split by the seed. */
tl_status tl_data_synthetic_pair(const tl_synth_pair_params *p, tl_dataset **out)
{
    static const char *fn = "synthetic_pair";
    if (!out) return tl_fail(TL_ERR_ARG, "%s: NULL output", fn);
    *out = NULL;
    tl_status st = tl_synth_pair_check(p);
    if (st) return st;
    const size_t n = p->rows;
    rawset rs;
    memset(&rs, 0, sizeof rs);
    plan pl;
    memset(&pl, 0, sizeof pl);
    int32_t *ci = tl_malloc(sizeof(int32_t) * 5 * n, "synthetic_pair columns");
    float *cf = tl_malloc(sizeof(float) * 5 * n, "synthetic_pair columns");
    if (!ci || !cf) {
        st = TL_ERR_NOMEM;
        goto done;
    }
    tl_synth_pair_out o = {ci, ci + n, ci + 2 * n, ci + 3 * n, ci + 4 * n, cf, cf + n, cf + 2 * n,
                           NULL, NULL, cf + 3 * n, cf + 4 * n};
    if ((st = tl_synth_pair_generate(p, &o))) goto done;
    static const char *const cats[5] = {"user_id", "item_id", "user_segment", "item_category", "context"};
    static const char *const nums[3] = {"user_activity", "item_price", "x"};
    tl_data_cat_col cat[5];
    tl_data_num_col num[3];
    for (int k = 0; k < 5; k++) cat[k] = (tl_data_cat_col){cats[k], 0, 0};
    for (int k = 0; k < 3; k++) num[k] = (tl_data_num_col){nums[k], TL_NUM_STANDARD, 0};
    static const char *const pos[] = {"1"}, *const neg[] = {"0"};
    tl_data_label lab[2] = {
        {.task = "a", .column = "a", .kind = TL_LABEL_POSITIVE, .positive = pos, .n_positive = 1, .negative = neg,
         .n_negative = 1},
        {.task = "b", .column = "b", .kind = TL_LABEL_POSITIVE, .positive = pos, .n_positive = 1, .negative = neg,
         .n_negative = 1},
    };
    tl_data_schema s;
    tl_data_schema_init(&s);
    s.path = "synthetic_pair";
    s.cat = cat;
    s.n_cat = 5;
    s.num = num;
    s.n_num = 3;
    s.labels = lab;
    s.n_labels = 2;
    s.split = TL_SPLIT_RATIO;
    s.ratio[0] = 0.8;
    s.ratio[1] = 0.1;
    s.ratio[2] = 0.1;
    s.seed = p->seed;
    if ((st = tl_data_plan_make(&s, fn, &pl))) goto done;
    if ((st = tl_rawset_init(&rs, 5, 3, 2, 0, 0))) goto done;
    for (size_t i = 0; i < n; i++) {
        if ((st = tl_rawset_reserve(&rs))) goto done;
        for (int k = 0; k < 5; k++) {
            char buf[16];
            int len = snprintf(buf, sizeof buf, "%d", (int)ci[(size_t)k * n + i]);
            if ((st = tl_strtab_intern(&rs.tab[k], buf, (size_t)len, &rs.cat[i * 5 + (size_t)k]))) goto done;
        }
        for (int k = 0; k < 3; k++) rs.num[i * 3 + (size_t)k] = cf[(size_t)k * n + i];
        rs.lab[i * 2] = cf[3 * n + i];
        rs.lab[i * 2 + 1] = cf[4 * n + i];
        rs.row[i] = (uint32_t)i;
        rs.n++;
    }
    char src[96];
    snprintf(src, sizeof src, "synthetic_pair(rho=%g, %s)", p->rho, p->nested ? "nested" : "not nested");
    finish_args fa = {&pl, &s, NULL, src};
    st = tl_data_finish(&rs, &fa, out);
done:
    tl_rawset_free(&rs);
    tl_data_plan_free(&pl);
    tl_free(ci);
    tl_free(cf);
    return st;
}
