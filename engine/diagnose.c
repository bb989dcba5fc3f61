/* diagnose.c — gate utilisation, expert collapse and the label-leakage
 * check (contracts in diagnose.h), from the model's public interface. */
#include "diagnose.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* ---- gates ------------------------------------------------------------------ */

static int has_gates(const tl_model *m)
{
    tl_backbone_kind k = tl_model_config_get(m)->backbone.kind;
    return k == TL_BACKBONE_MMOE || k == TL_BACKBONE_OMOE || k == TL_BACKBONE_PLE ||
           k == TL_BACKBONE_DSELECT_K || k == TL_BACKBONE_STEM || k == TL_BACKBONE_ADATT;
}

/* Backbones built in levels (the gates of a level are asked for). */
static int has_levels(tl_backbone_kind k)
{
    return k == TL_BACKBONE_PLE || k == TL_BACKBONE_STEM || k == TL_BACKBONE_ADATT;
}

int tl_diagnose_gate_experts(const tl_model *m, int level)
{
    (void)level;
    const tl_model_config *c = tl_model_config_get(m);
    const tl_backbone_spec *b = &c->backbone;
    if (!has_gates(m)) return 0;
    if (has_levels(b->kind)) return c->n_tasks * b->specific + b->shared;
    return b->experts;
}

/* Task k's gate node, the number of its columns, and where column j lands
 * in the gate matrix (map[j]). */
static tl_status find_gate(tl_model *m, int level, int k, tl_node *node, int *cols, int *map)
{
    const tl_model_config *c = tl_model_config_get(m);
    const tl_backbone_spec *b = &c->backbone;
    tl_graph *g = tl_model_graph(m);
    char name[64];
    int K = c->n_tasks;
    if (b->kind == TL_BACKBONE_PLE) {
        snprintf(name, sizeof name, "ple%d.gate%d", level, k + 1);
        *cols = b->specific + b->shared;
        for (int j = 0; j < *cols; j++)
            map[j] = j < b->specific ? k * b->specific + j : K * b->specific + (j - b->specific);
    } else if (b->kind == TL_BACKBONE_STEM || b->kind == TL_BACKBONE_ADATT) {
        /* every task's gate mixes all experts: task 1's .. task K's, then the shared */
        snprintf(name, sizeof name, "%s%d.gate%d", b->kind == TL_BACKBONE_STEM ? "stem" : "adatt", level, k + 1);
        *cols = K * b->specific + b->shared;
        for (int j = 0; j < *cols; j++) map[j] = j;
    } else { /* MMoE, OMoE, DSelect-k ("gate<k>": the selectors' mixture over the experts) */
        snprintf(name, sizeof name, b->kind == TL_BACKBONE_OMOE ? "gate" : "gate%d", k + 1);
        *cols = b->experts;
        for (int j = 0; j < *cols; j++) map[j] = j;
    }
    *node = tl_graph_find(g, name);
    if (*node == TL_NONE || tl_node_cols(g, *node) != *cols)
        return tl_fail(TL_ERR_STATE, "gates: the model graph has no gate node '%s'", name);
    return TL_OK;
}

static tl_status gate_args(const tl_model *m, const tl_split *s, const tl_gate_opts *o, int *level)
{
    const tl_model_config *c = tl_model_config_get(m);
    const tl_backbone_spec *b = &c->backbone;
    if (!has_gates(m))
        return tl_fail(TL_ERR_ARG, "gates: backbone %s has no gates (%s have)", tl_backbone_name(b->kind),
                       TL_DIAGNOSE_GATED);
    if (!s || s->n == 0) return tl_fail(TL_ERR_ARG, "gates: the split has no rows");
    if ((c->n_cat && !s->cat) || (c->n_num && !s->num))
        return tl_fail(TL_ERR_ARG, "gates: the split lacks features");
    *level = has_levels(b->kind) ? (o->level > 0 ? o->level : b->levels) : 1;
    if (has_levels(b->kind) && *level > b->levels)
        return tl_fail(TL_ERR_ARG, "gates: level %d outside 1..%d", *level, b->levels);
    if (o->field >= c->n_cat)
        return tl_fail(TL_ERR_ARG, "gates: field %d outside the %d categorical fields", o->field + 1,
                       c->n_cat);
    return TL_OK;
}

tl_status tl_diagnose_gates(tl_model *m, const tl_split *s, const tl_gate_opts *o, double *weights,
                            double *entropy, double *by_field, double *count)
{
    int level = 1;
    tl_status st = gate_args(m, s, o, &level);
    if (st != TL_OK) return st;
    const tl_model_config *c = tl_model_config_get(m);
    tl_graph *g = tl_model_graph(m);
    int K = c->n_tasks, E = tl_diagnose_gate_experts(m, level), B = c->max_batch;
    int f = o->field, nc = c->n_cat;
    tl_node node[TL_MAX_TASKS];
    int cols[TL_MAX_TASKS];
    int *map = tl_malloc((size_t)K * (size_t)E * sizeof(int), "gate map");
    if (!map) return TL_ERR_NOMEM;
    for (int k = 0; k < K && st == TL_OK; k++)
        st = find_gate(m, level, k, &node[k], &cols[k], map + (size_t)k * (size_t)E);
    if (st != TL_OK) {
        tl_free(map);
        return st;
    }
    size_t KE = (size_t)K * (size_t)E;
    memset(weights, 0, KE * sizeof(double));
    memset(entropy, 0, (size_t)K * sizeof(double));
    if (f >= 0) {
        memset(by_field, 0, (size_t)c->vocab[f] * KE * sizeof(double));
        memset(count, 0, (size_t)c->vocab[f] * sizeof(double));
    }
    for (size_t from = 0; from < s->n && st == TL_OK; from += (size_t)B) {
        if (tl_cancelled()) {
            st = tl_fail(TL_ERR_CANCELLED, "gates interrupted");
            break;
        }
        int n = (int)(s->n - from < (size_t)B ? s->n - from : (size_t)B);
        tl_model_fill_batch(m, s, NULL, from, n);
        if ((st = tl_graph_forward(g, 0)) != TL_OK) {
            st = tl_fail_context(st, "gates");
            break;
        }
        for (int k = 0; k < K; k++) {
            const float *gw = tl_graph_value(g, node[k]);
            const int *mk = map + (size_t)k * (size_t)E;
            for (int i = 0; i < n; i++) {
                const float *row = gw + (size_t)i * (size_t)cols[k];
                double *bf = NULL;
                if (f >= 0) {
                    int32_t id = s->cat[(from + (size_t)i) * (size_t)nc + (size_t)f];
                    bf = by_field + (size_t)id * KE + (size_t)k * (size_t)E;
                    if (k == 0) count[id] += 1.0;
                }
                for (int j = 0; j < cols[k]; j++) {
                    double v = (double)row[j];
                    weights[(size_t)k * (size_t)E + (size_t)mk[j]] += v;
                    if (bf) bf[mk[j]] += v;
                    if (v > 0.0) entropy[k] -= v * log(v);
                }
            }
        }
    }
    tl_free(map);
    if (st != TL_OK) return st;
    for (size_t i = 0; i < KE; i++) weights[i] /= (double)s->n;
    for (int k = 0; k < K; k++) entropy[k] /= (double)s->n;
    if (f >= 0)
        for (int32_t id = 0; id < c->vocab[f]; id++)
            for (size_t i = 0; count[id] > 0.0 && i < KE; i++) by_field[(size_t)id * KE + i] /= count[id];
    return TL_OK;
}

/* The experts' output block of an MMoE/OMoE graph: tl_build_backbone adds it
 * right before the first gate's weight parameter. TL_NONE when the graph
 * does not have that shape. */
static tl_node expert_block(tl_model *m, int *d)
{
    const tl_backbone_spec *b = &tl_model_config_get(m)->backbone;
    tl_graph *g = tl_model_graph(m);
    if (b->kind != TL_BACKBONE_MMOE && b->kind != TL_BACKBONE_OMOE) return TL_NONE;
    tl_node w = tl_graph_find(g, b->kind == TL_BACKBONE_OMOE ? "gate.w" : "gate1.w");
    if (w == TL_NONE || w == 0) return TL_NONE;
    tl_node x = w - 1;
    *d = b->expert.units[b->expert.n - 1];
    if (!tl_node_batched(g, x) || tl_node_cols(g, x) != b->experts * *d) return TL_NONE;
    return x;
}

#define COLLAPSE_MAX_ROWS 65536

static void add_msg(char *msg, size_t cap, const char *text)
{
    size_t len = strlen(msg);
    if (len + 1 < cap) snprintf(msg + len, cap - len, "%s", text);
}

tl_status tl_diagnose_collapse(tl_model *m, const tl_split *s, char *msg, size_t cap)
{
    if (cap) msg[0] = '\0';
    /* DSelect-k selects k experts on purpose: an unused expert is its design */
    if (!has_gates(m) || tl_model_config_get(m)->backbone.kind == TL_BACKBONE_DSELECT_K || !s || s->n == 0)
        return TL_OK;
    int K = tl_model_config_get(m)->n_tasks, E = tl_diagnose_gate_experts(m, 0), B = tl_model_config_get(m)->max_batch;
    double *w = tl_malloc((size_t)K * (size_t)E * sizeof(double), "gate means");
    double ent[TL_MAX_TASKS];
    if (!w) return TL_ERR_NOMEM;
    tl_gate_opts o = {0, -1};
    tl_split head = *s; /* the gate means settle long before a large split ends */
    if (head.n > COLLAPSE_MAX_ROWS) head.n = COLLAPSE_MAX_ROWS;
    tl_status st = tl_diagnose_gates(m, &head, &o, w, ent, NULL, NULL);
    char part[160], list[256] = "";
    int unused = 0;
    double min_weight = E <= 10 ? 0.01 : 0.1 / E; /* with many experts 1% is above a uniform gate */
    for (int e = 0; e < E && st == TL_OK; e++) {
        int used = 0;
        for (int k = 0; k < K; k++) used |= w[(size_t)k * (size_t)E + (size_t)e] >= min_weight;
        if (used) continue;
        snprintf(part, sizeof part, "%s%d", unused ? ", " : "", e + 1);
        add_msg(list, sizeof list, part);
        unused++;
    }
    if (unused) {
        snprintf(part, sizeof part, "%s ", unused == 1 ? "expert" : "experts");
        add_msg(msg, cap, part);
        add_msg(msg, cap, list);
        snprintf(part, sizeof part, " %s never used (mean gate weight < %.2g%% for every task)",
                 unused == 1 ? "is" : "are", 100.0 * min_weight);
        add_msg(msg, cap, part);
    }
    tl_free(w);
    int d = 0;
    tl_node x = st == TL_OK ? expert_block(m, &d) : TL_NONE;
    if (x == TL_NONE) return st;
    int n = (int)(s->n < (size_t)B ? s->n : (size_t)B);
    tl_model_fill_batch(m, s, NULL, 0, n);
    if ((st = tl_graph_forward(tl_model_graph(m), 0)) != TL_OK) return tl_fail_context(st, "collapse check");
    const float *v = tl_graph_value(tl_model_graph(m), x);
    size_t stride = (size_t)E * (size_t)d;
    int pairs = 0;
    for (int a = 0; a < E; a++)
        for (int b = a + 1; b < E; b++) {
            double ab = 0.0, aa = 0.0, bb = 0.0;
            for (int i = 0; i < n; i++) {
                const float *r = v + (size_t)i * stride;
                for (int j = 0; j < d; j++) {
                    double p = (double)r[a * d + j], q = (double)r[b * d + j];
                    ab += p * q;
                    aa += p * p;
                    bb += q * q;
                }
            }
            double c = aa > 0.0 && bb > 0.0 ? ab / sqrt(aa * bb) : 0.0;
            if (c <= 0.99) continue;
            if (++pairs > 3) continue;
            snprintf(part, sizeof part, "%sexperts %d and %d give nearly identical outputs (cosine %.3f)",
                     msg[0] ? "; " : "", a + 1, b + 1, c);
            add_msg(msg, cap, part);
        }
    if (pairs > 3) {
        snprintf(part, sizeof part, " and %d more such pairs", pairs - 3);
        add_msg(msg, cap, part);
    }
    return TL_OK;
}

/* ---- label leakage ------------------------------------------------------------- */

#define LEAK_MAX_ROWS 100000 /* larger splits are subsampled by a stride */
#define LEAK_PRIOR 10.0      /* pseudo-rows shrinking an id's rate towards the overall rate */

static int u64_cmp(const void *pa, const void *pb)
{
    uint64_t a = *(const uint64_t *)pa, b = *(const uint64_t *)pb;
    return (a > b) - (a < b);
}

/* Dense ids 0..k-1 of field f over the n sampled rows (in id order), for a
 * field whose vocabulary is much larger than the rows (hash=2e8 on 2,000
 * rows): the tables are then sized by the rows, not the buckets. Returns k. */
static size_t dense_ids(const tl_split *s, int nc, int f, size_t n, size_t stride, uint64_t *pairs,
                        int32_t *dense)
{
    for (size_t i = 0; i < n; i++)
        pairs[i] = (uint64_t)(uint32_t)s->cat[i * stride * (size_t)nc + (size_t)f] << 32 | (uint64_t)i;
    qsort(pairs, n, sizeof *pairs, u64_cmp);
    size_t k = 0;
    for (size_t j = 0; j < n; j++) {
        if (j > 0 && pairs[j] >> 32 != pairs[j - 1] >> 32) k++;
        dense[pairs[j] & 0xffffffffu] = (int32_t)k;
    }
    return n ? k + 1 : 0;
}

static int leak_cmp(const void *pa, const void *pb)
{
    const tl_leak_row *a = pa, *b = pb;
    if (a->task != b->task) return a->task < b->task ? -1 : 1;
    int na = isnan(a->auc), nb = isnan(b->auc);
    if (na != nb) return na - nb;
    if (!na && a->auc != b->auc) return a->auc > b->auc ? -1 : 1;
    if (a->numeric != b->numeric) return a->numeric - b->numeric;
    return a->field - b->field;
}

tl_status tl_diagnose_leakage(const tl_dataset *d, const tl_split *s,
                              const char *const *label_columns, double threshold,
                              tl_leak_row **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    if (!s || s->n == 0) return tl_fail(TL_ERR_ARG, "leakage: the split has no rows");
    int K = tl_dataset_n_tasks(d), nc = tl_dataset_n_cat(d), nn = tl_dataset_n_num(d);
    const int32_t *vocab = tl_dataset_vocab(d);
    int nb = 0;
    for (int t = 0; t < K; t++) nb += tl_dataset_task_type(d, t) == TL_TASK_BINARY;
    size_t stride = (s->n + LEAK_MAX_ROWS - 1) / LEAK_MAX_ROWS, n = (s->n + stride - 1) / stride;
    /* a field with more ids than this is compacted to the ids its rows use */
    const size_t direct_max = 4 * n + 16;
    size_t vmax = 1;
    int any_big = 0;
    for (int f = 0; f < nc; f++) {
        size_t v = (size_t)vocab[f] > direct_max ? n : (size_t)vocab[f];
        any_big |= (size_t)vocab[f] > direct_max;
        vmax = v > vmax ? v : vmax;
    }
    size_t nrows = (size_t)nb * (size_t)(nc + nn);
    tl_leak_row *rows = tl_calloc(nrows ? nrows : 1, sizeof *rows, "leakage table");
    float *y = tl_malloc(n * sizeof(float), "leakage labels");
    float *w = s->weight ? tl_malloc(n * sizeof(float), "leakage weights") : NULL;
    float *x = tl_malloc(n * sizeof(float), "leakage scores");
    double *acc = tl_malloc(vmax * 4 * sizeof(double), "leakage rates");
    uint64_t *pairs = any_big ? tl_malloc(n * sizeof *pairs, "leakage ids") : NULL;
    int32_t *dense = any_big ? tl_malloc(n * sizeof *dense, "leakage ids") : NULL;
    tl_metric_ws *ws = tl_metric_ws_new();
    tl_status st = rows && y && x && acc && ws && (w || !s->weight) && (!any_big || (pairs && dense)) ? TL_OK
                                                                                                     : TL_ERR_NOMEM;
    size_t r = 0;
    for (int t = 0; t < K && st == TL_OK; t++) {
        if (tl_dataset_task_type(d, t) != TL_TASK_BINARY) continue;
        double pos = 0.0, tot = 0.0;
        for (size_t i = 0; i < n; i++) {
            size_t src = i * stride;
            y[i] = s->labels[src * (size_t)K + (size_t)t];
            if (w) w[i] = s->weight[src];
            pos += (double)y[i] * (w ? (double)w[i] : 1.0);
            tot += w ? (double)w[i] : 1.0;
        }
        double prior = tot > 0.0 ? pos / tot : 0.0;
        const char *lc = label_columns ? label_columns[t] : NULL;
        for (int j = 0; j < nc + nn && st == TL_OK; j++) {
            int numeric = j >= nc, f = numeric ? j - nc : j;
            if (!numeric) {
                /* acc[4 id + 2h + 0/1]: positives and rows of id in half h */
                int big = (size_t)vocab[f] > direct_max;
                size_t ids = big ? dense_ids(s, nc, f, n, stride, pairs, dense) : (size_t)vocab[f];
                memset(acc, 0, ids * 4 * sizeof(double));
                for (size_t i = 0; i < n; i++) {
                    int32_t id = big ? dense[i] : s->cat[i * stride * (size_t)nc + (size_t)f];
                    double wi = w ? (double)w[i] : 1.0;
                    acc[4 * (size_t)id + 2 * (i & 1)] += (double)y[i] * wi;
                    acc[4 * (size_t)id + 2 * (i & 1) + 1] += wi;
                }
                for (size_t i = 0; i < n; i++) {
                    int32_t id = big ? dense[i] : s->cat[i * stride * (size_t)nc + (size_t)f];
                    const double *o = acc + 4 * (size_t)id + 2 * (1 - (i & 1));
                    x[i] = (float)((o[0] + LEAK_PRIOR * prior) / (o[1] + LEAK_PRIOR));
                }
            } else {
                for (size_t i = 0; i < n; i++) x[i] = s->num[i * stride * (size_t)nn + (size_t)f];
            }
            double auc = NAN;
            unsigned notes = 0;
            st = tl_metric_auc(x, y, w, NULL, n, ws, &auc, &notes);
            tl_leak_row *lr = &rows[r++];
            lr->task = t;
            lr->numeric = numeric;
            lr->field = f;
            lr->feature = numeric ? tl_dataset_num_name(d, f) : tl_dataset_cat_name(d, f);
            lr->auc = isnan(auc) ? auc : (auc > 1.0 - auc ? auc : 1.0 - auc);
            lr->source = lc && lr->feature && strcmp(lc, lr->feature) == 0;
            lr->leak = lr->source || lr->auc > threshold;
        }
    }
    tl_metric_ws_free(ws);
    tl_free(y);
    tl_free(w);
    tl_free(x);
    tl_free(acc);
    tl_free(pairs);
    tl_free(dense);
    if (st != TL_OK) {
        tl_free(rows);
        return tl_fail_context(st, "leakage");
    }
    qsort(rows, r, sizeof *rows, leak_cmp);
    *out = rows;
    *n_out = r;
    return TL_OK;
}

void tl_diagnose_leakage_free(tl_leak_row *rows) { tl_free(rows); }
