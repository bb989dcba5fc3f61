/* data/schema.c — the loading schema: its defaults, its checks, and its
 * resolution into a plan (the feature columns to read, label source columns
 * dropped unless kept).
 */
#include "schema.h"

#include <math.h>
#include <string.h>

#include "data_internal.h"

void tl_data_schema_init(tl_data_schema *s)
{
    memset(s, 0, sizeof *s);
    s->sep = ",";
    s->header = 1;
    s->min_count = 1;
    s->seed = 1;
    s->cache = 0;
}

void tl_data_plan_free(plan *p)
{
    tl_free(p->cat);
    tl_free(p->num);
    tl_free(p->bag);
    tl_free(p->bag_cap);
}

/* A label's source column is a feature only when one of its labels keeps
 * it. Listing it among the features without keep= is an error (it used to be
 * dropped silently): returns that label's task, else NULL. */
static const char *dropped_label_task(const tl_data_schema *s, const char *name)
{
    const char *task = NULL;
    for (int t = 0; t < s->n_labels; t++)
        if (s->labels[t].column && strcmp(s->labels[t].column, name) == 0) {
            if (s->labels[t].keep) return NULL;
            task = s->labels[t].task ? s->labels[t].task : "?";
        }
    return task;
}

static tl_status label_as_feature(const char *fn, const char *role, const char *name, const char *task)
{
    return tl_fail(TL_ERR_ARG,
                   "%s: column '%s' is listed as %s, but it is the label column of task '%s': a label's "
                   "column is not a feature (keep=true on the label keeps it as one)",
                   fn, name, role, task);
}

/* 1 when a categorical or numeric column is called name. */
static int single_field(const tl_data_schema *s, const char *name)
{
    for (int j = 0; j < s->n_cat; j++)
        if (s->cat[j].name && strcmp(s->cat[j].name, name) == 0) return 1;
    for (int j = 0; j < s->n_num; j++)
        if (s->num[j].name && strcmp(s->num[j].name, name) == 0) return 1;
    return 0;
}

static tl_status plan_bags(const tl_data_schema *s, const char *fn, plan *p)
{
    if (s->n_bag < 0 || s->n_bag > TL_DATA_MAX_BAGS)
        return tl_fail(TL_ERR_ARG, "%s: %d multi-valued fields; at most %d", fn, s->n_bag, TL_DATA_MAX_BAGS);
    p->bag = tl_calloc((size_t)s->n_bag + 1, sizeof *p->bag, "schema plan");
    p->bag_cap = tl_calloc((size_t)s->n_bag + 1, sizeof *p->bag_cap, "schema plan");
    if (!p->bag || !p->bag_cap) return TL_ERR_NOMEM;
    for (int k = 0; k < s->n_bag; k++) {
        const tl_data_bag_col *c = &s->bag[k];
        if (!c->name || !*c->name) return tl_fail(TL_ERR_ARG, "%s: multi-valued column %d has no name", fn, k + 1);
        if (!c->sep || !*c->sep || strlen(c->sep) > 8 || strchr(c->sep, '"') || strchr(c->sep, '\n'))
            return tl_fail(TL_ERR_ARG, "%s: column '%s': multi= must be 1 to 8 characters without quotes or "
                                       "newlines", fn, c->name);
        if ((unsigned)c->pooling > TL_POOL_MAX)
            return tl_fail(TL_ERR_ARG, "%s: column '%s': unknown pooling %d", fn, c->name, (int)c->pooling);
        if (c->max_len < 0 || c->max_len > TL_DATA_MAX_BAG_LEN)
            return tl_fail(TL_ERR_ARG, "%s: column '%s': max_len must be in 1 .. %d, got %d", fn, c->name,
                           TL_DATA_MAX_BAG_LEN, c->max_len);
        if (c->hash_buckets < 0 || c->min_count < 0)
            return tl_fail(TL_ERR_ARG, "%s: column '%s': hash_buckets and min_count must be >= 0", fn, c->name);
        for (int j = 0; j < k; j++)
            if (strcmp(s->bag[j].name, c->name) == 0)
                return tl_fail(TL_ERR_ARG, "%s: column '%s' is listed twice", fn, c->name);
        if (single_field(s, c->name))
            return tl_fail(TL_ERR_ARG, "%s: column '%s' is both multi-valued and single-valued", fn, c->name);
        const char *task = dropped_label_task(s, c->name);
        if (task) return label_as_feature(fn, "multi-valued", c->name, task);
        p->bag[p->n_bag] = c;
        p->bag_cap[p->n_bag++] = c->max_len > 0 ? c->max_len : TL_DATA_MAX_BAG_LEN;
    }
    return TL_OK;
}

tl_status tl_data_plan_make(const tl_data_schema *s, const char *fn, plan *p)
{
    memset(p, 0, sizeof *p);
    p->cat = tl_calloc((size_t)s->n_cat + 1, sizeof *p->cat, "schema plan");
    p->num = tl_calloc((size_t)s->n_num + 1, sizeof *p->num, "schema plan");
    if (!p->cat || !p->num) return TL_ERR_NOMEM;
    for (int k = 0; k < s->n_cat; k++) {
        const tl_data_cat_col *c = &s->cat[k];
        if (!c->name || !*c->name) return tl_fail(TL_ERR_ARG, "%s: categorical column %d has no name", fn, k + 1);
        if (c->hash_buckets < 0 || c->min_count < 0)
            return tl_fail(TL_ERR_ARG, "%s: column '%s': hash_buckets and min_count must be >= 0", fn, c->name);
        for (int j = 0; j < k; j++)
            if (strcmp(s->cat[j].name, c->name) == 0)
                return tl_fail(TL_ERR_ARG, "%s: column '%s' is listed twice", fn, c->name);
        const char *task = dropped_label_task(s, c->name);
        if (task) return label_as_feature(fn, "categorical", c->name, task);
        p->cat[p->n_cat++] = c;
    }
    for (int pass = 0; pass < 2; pass++)
        for (int k = 0; k < s->n_num; k++) {
            const tl_data_num_col *c = &s->num[k];
            if (!c->name || !*c->name) return tl_fail(TL_ERR_ARG, "%s: numeric column %d has no name", fn, k + 1);
            if ((int)c->transform < 0 || c->transform > TL_NUM_QUANTILE)
                return tl_fail(TL_ERR_ARG, "%s: column '%s': unknown transform %d", fn, c->name, (int)c->transform);
            if (c->transform == TL_NUM_QUANTILE && (c->buckets < 0 || c->buckets > 1000000))
                return tl_fail(TL_ERR_ARG, "%s: column '%s': buckets must be in 2 .. 1000000", fn, c->name);
            if (pass == 0) {
                /* a column may be both a number and quantile buckets, not twice either */
                for (int j = 0; j < k; j++)
                    if (strcmp(s->num[j].name, c->name) == 0 &&
                        (s->num[j].transform == TL_NUM_QUANTILE) == (c->transform == TL_NUM_QUANTILE))
                        return tl_fail(TL_ERR_ARG, "%s: column '%s' is listed twice", fn, c->name);
                for (int j = 0; j < s->n_cat; j++)
                    if (strcmp(s->cat[j].name, c->name) == 0)
                        return tl_fail(TL_ERR_ARG, "%s: column '%s' is both categorical and numeric", fn,
                                       c->name);
            }
            if ((c->transform == TL_NUM_QUANTILE) != pass) continue;
            const char *task = dropped_label_task(s, c->name);
            if (task) return label_as_feature(fn, "numeric", c->name, task);
            p->num[p->n_num++] = c;
            if (pass == 0) p->n_num_plain++;
        }
    tl_status st = plan_bags(s, fn, p);
    if (st) return st;
    for (int t = 0; t < s->n_labels; t++) {
        const tl_data_label *l = &s->labels[t];
        if (!l->task || !*l->task) return tl_fail(TL_ERR_ARG, "%s: label %d has no task name", fn, t + 1);
        if (!l->column || !*l->column) return tl_fail(TL_ERR_ARG, "%s: task '%s' has no column", fn, l->task);
        if ((int)l->kind < 0 || l->kind > TL_LABEL_REGRESSION)
            return tl_fail(TL_ERR_ARG, "%s: task '%s': unknown label kind", fn, l->task);
        if (l->kind == TL_LABEL_POSITIVE && l->n_positive < 1)
            return tl_fail(TL_ERR_ARG, "%s: task '%s' needs positive, threshold or regression", fn, l->task);
        if (l->kind == TL_LABEL_THRESHOLD && !isfinite(l->threshold))
            return tl_fail(TL_ERR_ARG, "%s: task '%s': threshold must be finite", fn, l->task);
        for (int j = 0; j < t; j++)
            if (strcmp(s->labels[j].task, l->task) == 0)
                return tl_fail(TL_ERR_ARG, "%s: task '%s' is defined twice", fn, l->task);
    }
    if (s->n_labels < 1) return tl_fail(TL_ERR_ARG, "%s: no labels: give at least one task", fn);
    if (s->n_labels > TL_DATA_MAX_TASKS)
        return tl_fail(TL_ERR_ARG, "%s: %d tasks; a model takes at most %d", fn, s->n_labels, TL_DATA_MAX_TASKS);
    for (int t = 0; t < s->n_labels; t++)
        if (strlen(s->labels[t].task) >= TL_DATA_TASK_NAME_MAX)
            return tl_fail(TL_ERR_ARG, "%s: task name '%.40s...' is %zu bytes; a model takes at most %d", fn,
                           s->labels[t].task, strlen(s->labels[t].task), TL_DATA_TASK_NAME_MAX - 1);
    return TL_OK;
}

tl_status tl_data_schema_check(const tl_data_schema *s, const char *fn)
{
    if (!s) return tl_fail(TL_ERR_ARG, "%s: NULL schema", fn);
    if (!s->path || !*s->path) return tl_fail(TL_ERR_ARG, "%s: no path", fn);
    if (!s->sep || !*s->sep || strlen(s->sep) > 8 || strchr(s->sep, '"') || strchr(s->sep, '\n'))
        return tl_fail(TL_ERR_ARG, "%s: sep must be 1 to 8 characters without quotes or newlines", fn);
    if (s->skip_initial_space && s->sep[0] == ' ')
        return tl_fail(TL_ERR_ARG, "%s: skipping initial spaces needs a separator that does not start with a space", fn);
    if (!s->header && s->n_columns < 1)
        return tl_fail(TL_ERR_ARG, "%s: without a header, give the column names (columns)", fn);
    if (s->skip < 0) return tl_fail(TL_ERR_ARG, "%s: skip must be >= 0", fn);
    if (s->split == TL_SPLIT_RATIO) {
        double sum = 0;
        for (int k = 0; k < 3; k++) {
            if (!(s->ratio[k] >= 0 && s->ratio[k] <= 1))
                return tl_fail(TL_ERR_ARG, "%s: split ratio %s must be in [0, 1], got %g", fn, tl_data_split_names[k],
                               s->ratio[k]);
            sum += s->ratio[k];
        }
        if (fabs(sum - 1.0) > 1e-6)
            return tl_fail(TL_ERR_ARG, "%s: split ratios must sum to 1, got %g", fn, sum);
        if (!(s->ratio[0] > 0)) return tl_fail(TL_ERR_ARG, "%s: split ratio train must be > 0", fn);
    } else if (s->split == TL_SPLIT_MODULO) {
        if (s->modulo < 1 || s->modulo > TL_MODULO_MAX)
            return tl_fail(TL_ERR_ARG, "%s: split modulo must be in 1 .. %d, got %d", fn, TL_MODULO_MAX, s->modulo);
        int any_train = 0;
        for (int k = 0; k < s->modulo; k++) {
            if (s->modulo_to[k] < TL_TO_DROP || s->modulo_to[k] > TL_TO_TEST)
                return tl_fail(TL_ERR_ARG, "%s: split residue %d has no valid target", fn, k);
            any_train |= s->modulo_to[k] == TL_TO_TRAIN;
        }
        if (!any_train) return tl_fail(TL_ERR_ARG, "%s: split modulo sends no residue to train", fn);
    } else if (s->split == TL_SPLIT_FILES) {
        if (!s->valid_path && !s->test_path)
            return tl_fail(TL_ERR_ARG, "%s: split by files needs a valid or test file", fn);
    } else if (s->split != TL_SPLIT_NONE) {
        return tl_fail(TL_ERR_ARG, "%s: unknown split kind %d", fn, (int)s->split);
    }
    return TL_OK;
}
