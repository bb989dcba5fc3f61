/* test_diagnose.c — engine/diagnose.c and engine/task_grads.c: gate weights
 * are softmax rows (every row sums to 1, so do the means and the per-value
 * means), the leakage check flags a label copy, a near copy and a kept source
 * column but not a clean column or a one-row-per-id column, the task-gradient diagnostics equal an
 * independent computation from one-hot loss weights, diagnostics leave
 * training bit-for-bit unchanged (dropout included), and a task trained in a
 * space gets no gradient from rows outside it. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "diagnose.h"
#include "model.h"
#include "models/model_impl.h"
#include "support.h"

#define N_CAT 2
#define N_NUM 3
#define VOCAB 6

/* ---- data: random features, labels that depend on them ---------------------- */

typedef struct {
    int32_t *cat;
    float *num, *labels;
    tl_split s;
} tdata;

static void make_data(tdata *d, size_t n, uint64_t seed)
{
    tl_rng r;
    tl_rng_seed(&r, seed);
    d->cat = malloc(n * N_CAT * sizeof *d->cat);
    d->num = malloc(n * N_NUM * sizeof *d->num);
    d->labels = malloc(n * 2 * sizeof *d->labels);
    for (size_t i = 0; i < n; i++) {
        for (int f = 0; f < N_CAT; f++) d->cat[i * N_CAT + (size_t)f] = (int32_t)tl_rng_below(&r, VOCAB);
        for (int j = 0; j < N_NUM; j++) d->num[i * N_NUM + (size_t)j] = tl_rng_uniform(&r) * 2.0f - 1.0f;
        float z = d->num[i * N_NUM] + 0.3f * (float)d->cat[i * N_CAT];
        d->labels[i * 2] = z > 0.5f ? 1.0f : 0.0f;
        d->labels[i * 2 + 1] = d->num[i * N_NUM + 1] - d->num[i * N_NUM + 2] > 0.0f ? 1.0f : 0.0f;
    }
    memset(&d->s, 0, sizeof d->s);
    d->s.name = "train";
    d->s.n = n;
    d->s.cat = d->cat;
    d->s.num = d->num;
    d->s.labels = d->labels;
}

static void free_data(tdata *d)
{
    free(d->cat);
    free(d->num);
    free(d->labels);
}

static tl_model *make_model(tl_backbone_kind kind, float dropout, int space)
{
    tl_model_config c;
    tl_model_config_defaults(&c);
    c.backbone.kind = kind;
    c.backbone.expert = (tl_mlp_spec){2, {12, 6}, dropout};
    c.backbone.bottom = (tl_mlp_spec){1, {8}, 0.0f};
    c.backbone.experts = 3;
    c.backbone.levels = 2;
    c.backbone.shared = 2;
    c.backbone.specific = 1;
    c.n_cat = N_CAT;
    c.vocab[0] = c.vocab[1] = VOCAB;
    c.n_num = N_NUM;
    c.emb_dim = 3;
    c.n_tasks = 2;
    for (int k = 0; k < 2; k++) {
        snprintf(c.tasks[k].name, sizeof c.tasks[k].name, "%s", k == 0 ? "ctr" : "cvr");
        c.tasks[k].type = TL_TASK_BINARY;
        c.tasks[k].tower = (tl_mlp_spec){1, {4}, 0.0f};
        c.tasks[k].weight = 1.0f;
        c.tasks[k].space = -1;
    }
    c.tasks[1].space = space;
    c.max_batch = 64;
    c.seed = 11;
    tl_model *m = NULL;
    tl_status st = tl_model_new(&c, &m);
    if (st != TL_OK) print_message("tl_model_new: %s\n", tl_errmsg());
    assert_int_equal(st, TL_OK);
    return m;
}

/* ---- gates ------------------------------------------------------------------- */

static void check_gates(tl_backbone_kind kind)
{
    tdata d;
    make_data(&d, 150, 3);
    tl_model *m = make_model(kind, 0.0f, -1);
    int E = tl_diagnose_gate_experts(m, 0);
    assert_int_equal(E, kind == TL_BACKBONE_PLE ? 2 * 1 + 2 : 3);
    double w[2 * 4], ent[2], by[VOCAB * 2 * 4], cnt[VOCAB];
    tl_gate_opts o = {0, 1};
    assert_int_equal(tl_diagnose_gates(m, &d.s, &o, w, ent, by, cnt), TL_OK);
    double rows = 0.0;
    for (int v = 0; v < VOCAB; v++) rows += cnt[v];
    assert_true(rows == 150.0);
    for (int k = 0; k < 2; k++) {
        double sum = 0.0, from_values[4] = {0};
        for (int e = 0; e < E; e++) sum += w[k * E + e];
        assert_true(fabs(sum - 1.0) < 1e-6);
        assert_true(ent[k] > 0.0 && ent[k] <= log((double)E) + 1e-9);
        for (int v = 0; v < VOCAB; v++) {
            if (cnt[v] == 0.0) continue;
            double sv = 0.0;
            for (int e = 0; e < E; e++) {
                sv += by[(v * 2 + k) * E + e];
                from_values[e] += by[(v * 2 + k) * E + e] * cnt[v] / 150.0;
            }
            assert_true(fabs(sv - 1.0) < 1e-6);
        }
        for (int e = 0; e < E; e++) assert_true(fabs(from_values[e] - w[k * E + e]) < 1e-9);
    }
    if (kind == TL_BACKBONE_PLE) { /* task k never gates the other task's specific expert */
        assert_true(w[0 * E + 1] == 0.0 && w[1 * E + 0] == 0.0);
        assert_true(w[0 * E + 0] > 0.0 && w[1 * E + 1] > 0.0);
    }
    if (kind == TL_BACKBONE_OMOE) /* one gate for both tasks */
        for (int e = 0; e < E; e++) assert_true(w[e] == w[E + e]);
    /* every row of every gate node sums to 1 */
    tl_model_fill_batch(m, &d.s, NULL, 0, 64);
    assert_int_equal(tl_graph_forward(tl_model_graph(m), 0), TL_OK);
    const char *names[3] = {"gate1", "gate", "ple2.gate2"};
    const char *name = names[kind == TL_BACKBONE_MMOE ? 0 : kind == TL_BACKBONE_OMOE ? 1 : 2];
    tl_node g = tl_graph_find(tl_model_graph(m), name);
    assert_true(g != TL_NONE);
    int cols = tl_node_cols(tl_model_graph(m), g);
    const float *v = tl_graph_value(tl_model_graph(m), g);
    for (int i = 0; i < 64; i++) {
        double s = 0.0;
        for (int j = 0; j < cols; j++) s += (double)v[i * cols + j];
        assert_true(fabs(s - 1.0) < 1e-5);
    }
    tl_model_free(m);
    free_data(&d);
}

static void test_gates_mmoe(void **state) { (void)state; check_gates(TL_BACKBONE_MMOE); }
static void test_gates_omoe(void **state) { (void)state; check_gates(TL_BACKBONE_OMOE); }
static void test_gates_ple(void **state) { (void)state; check_gates(TL_BACKBONE_PLE); }

static void test_gates_errors(void **state)
{
    (void)state;
    tdata d;
    make_data(&d, 20, 3);
    tl_model *m = make_model(TL_BACKBONE_SHARED_BOTTOM, 0.0f, -1);
    double w[8], ent[2];
    tl_gate_opts o = {0, -1};
    assert_int_equal(tl_diagnose_gate_experts(m, 0), 0);
    assert_int_equal(tl_diagnose_gates(m, &d.s, &o, w, ent, NULL, NULL), TL_ERR_ARG);
    assert_non_null(strstr(tl_errmsg(), "no gates"));
    char msg[64] = "x";
    assert_int_equal(tl_diagnose_collapse(m, &d.s, msg, sizeof msg), TL_OK);
    assert_string_equal(msg, "");
    tl_model_free(m);
    free_data(&d);
}

/* An expert that no gate uses is named by the collapse check: push every
 * gate's bias for expert 2 far down. */
static void test_collapse_unused_expert(void **state)
{
    (void)state;
    tdata d;
    make_data(&d, 100, 5);
    tl_model *m = make_model(TL_BACKBONE_MMOE, 0.0f, -1);
    char msg[256];
    assert_int_equal(tl_diagnose_collapse(m, &d.s, msg, sizeof msg), TL_OK);
    assert_null(strstr(msg, "never used"));
    for (int k = 1; k <= 2; k++) {
        char name[32];
        snprintf(name, sizeof name, "gate%d.b", k);
        tl_node b = tl_graph_find(tl_model_graph(m), name);
        assert_true(b != TL_NONE);
        tlt_param(tl_model_graph(m), b)[1] = -30.0f;
    }
    assert_int_equal(tl_diagnose_collapse(m, &d.s, msg, sizeof msg), TL_OK);
    assert_non_null(strstr(msg, "expert 2 is never used"));
    /* identical experts: copy expert 1's first-layer columns onto expert 3 */
    tl_graph *g = tl_model_graph(m);
    const tl_param_info *w1 = tl_graph_param(g, tl_graph_param_index(g, tl_graph_find(g, "experts.l1.w")));
    float *p = tl_graph_params(g, NULL) + w1->offset;
    for (int r = 0; r < w1->rows; r++)
        for (int j = 0; j < 12; j++) p[r * w1->cols + 2 * 12 + j] = p[r * w1->cols + j];
    const tl_param_info *w2 = tl_graph_param(g, tl_graph_param_index(g, tl_graph_find(g, "experts.l2.w")));
    p = tl_graph_params(g, NULL) + w2->offset; /* [3*12 x 6]: expert e's block in rows e*12.. */
    memcpy(p + 2 * 12 * 6, p, 12 * 6 * sizeof(float));
    assert_int_equal(tl_diagnose_collapse(m, &d.s, msg, sizeof msg), TL_OK);
    assert_non_null(strstr(msg, "experts 1 and 3 give nearly identical outputs"));
    tl_model_free(m);
    free_data(&d);
}

/* ---- leakage ------------------------------------------------------------------- */

static char *tmp;
static int leak_hash; /* > 0: the clean dataset's a and id hashed into this many buckets */

static tl_dataset *leak_dataset(int dirty)
{
    char path[512];
    snprintf(path, sizeof path, "%s/leak%d.csv", tmp, dirty);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "a,id,copy,near,noise,click\n");
    tl_rng r;
    tl_rng_seed(&r, 99);
    for (int i = 0; i < 2000; i++) {
        int a = (int)tl_rng_below(&r, 5);
        int y = tl_rng_uniform_double(&r) < 0.2 + 0.1 * a ? 1 : 0; /* a is informative, not leaking */
        int flipped = tl_rng_below(&r, 400) == 0 ? 1 - y : y; /* 0.25% flipped */
        double near = flipped + 0.5 * tl_rng_uniform_double(&r);
        fprintf(f, "v%d,u%d,%s,%.4f,%.4f,%d\n", a, i, y ? "yes" : "no", near, tl_rng_uniform_double(&r), y);
    }
    fclose(f);
    tl_data_schema s;
    tl_data_schema_init(&s);
    s.path = path;
    tl_data_cat_col cat_dirty[] = {{"a", 0, 0}, {"id", 0, 0}, {"copy", 0, 0}, {"click", 0, 0}};
    tl_data_cat_col cat_clean[] = {{"a", 0, leak_hash}, {"id", 0, leak_hash}};
    tl_data_num_col num_dirty[] = {{"near", TL_NUM_STANDARD, 0}, {"noise", TL_NUM_STANDARD, 0}};
    tl_data_num_col num_clean[] = {{"noise", TL_NUM_STANDARD, 0}};
    const char *const pos[] = {"1"};
    tl_data_label lab = {0};
    lab.task = "click";
    lab.column = "click";
    lab.kind = TL_LABEL_POSITIVE;
    lab.positive = pos;
    lab.n_positive = 1;
    lab.keep = dirty;
    s.cat = dirty ? cat_dirty : cat_clean;
    s.n_cat = dirty ? 4 : 2;
    s.num = dirty ? num_dirty : num_clean;
    s.n_num = dirty ? 2 : 1;
    s.labels = &lab;
    s.n_labels = 1;
    tl_dataset *d = NULL;
    tl_status st = tl_data_csv_load(&s, NULL, &d);
    if (st != TL_OK) print_message("load: %s\n", tl_errmsg());
    assert_int_equal(st, TL_OK);
    return d;
}

static const tl_leak_row *find_row(const tl_leak_row *r, size_t n, const char *feature)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(r[i].feature, feature) == 0) return &r[i];
    fail_msg("no leakage row for '%s'", feature);
    return NULL;
}

static void test_leakage_flags_copies(void **state)
{
    (void)state;
    tl_dataset *d = leak_dataset(1);
    const tl_split *s = tl_dataset_split(d, "all");
    const char *cols[1] = {"click"};
    tl_leak_row *r = NULL;
    size_t n = 0;
    assert_int_equal(tl_diagnose_leakage(d, s, cols, 0.99, &r, &n), TL_OK);
    assert_int_equal(n, 6);
    for (size_t i = 1; i < n; i++) assert_true(r[i - 1].auc >= r[i].auc); /* sorted */
    const tl_leak_row *copy = find_row(r, n, "copy"), *near = find_row(r, n, "near"),
                      *click = find_row(r, n, "click"), *a = find_row(r, n, "a"),
                      *id = find_row(r, n, "id"), *noise = find_row(r, n, "noise");
    assert_true(copy->leak && !copy->source && copy->auc > 0.999);
    assert_true(near->leak && !near->source && near->auc > 0.99 && near->auc < 0.9999);
    assert_true(click->leak && click->source);
    assert_true(!a->leak && a->auc > 0.55 && a->auc < 0.9);
    assert_true(!id->leak && id->auc < 0.6); /* one row per id: cross-fitting sees no signal */
    assert_true(!noise->leak && noise->auc < 0.6);
    tl_diagnose_leakage_free(r);
    /* without the source names the kept column still leaks by its AUC */
    assert_int_equal(tl_diagnose_leakage(d, s, NULL, 0.99, &r, &n), TL_OK);
    click = find_row(r, n, "click");
    assert_true(click->leak && !click->source && click->auc > 0.999);
    tl_diagnose_leakage_free(r);
    tl_dataset_free(d);
}

/* issue 25 item 8: the per-id tables were sized by the vocabulary, so
 * hash=2e8 on 2,000 rows asked for 6.4 GB. Sized by the rows, the check runs
 * under an address-space limit of 1 GiB over the process's current size and
 * gives the same AUCs as the same columns with vocabulary ids. */
static void test_leakage_huge_hash_sized_by_rows(void **state)
{
    (void)state;
#if defined(__SANITIZE_ADDRESS__)
    leak_hash = 1000000; /* ASan reserves terabytes: no limit, the compacting path still runs */
#else
    leak_hash = 200000000;
#endif
    tl_dataset *h = leak_dataset(0);
    leak_hash = 0;
    tl_dataset *v = leak_dataset(0);
    assert_true(tl_dataset_vocab(h)[1] > 1000000);
    fflush(stdout);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
#if !defined(__SANITIZE_ADDRESS__)
        FILE *f = fopen("/proc/self/statm", "r");
        unsigned long pages = 0;
        if (!f || fscanf(f, "%lu", &pages) != 1) _exit(3);
        fclose(f);
        struct rlimit rl;
        rl.rlim_cur = rl.rlim_max = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + ((rlim_t)1 << 30);
        if (setrlimit(RLIMIT_AS, &rl) != 0) _exit(3);
#endif
        tl_leak_row *rh = NULL, *rv = NULL;
        size_t nh = 0, nv = 0;
        if (tl_diagnose_leakage(h, tl_dataset_split(h, "all"), NULL, 0.99, &rh, &nh) != TL_OK) {
            printf("leakage with hash buckets: %s\n", tl_errmsg());
            fflush(stdout);
            _exit(1);
        }
        if (tl_diagnose_leakage(v, tl_dataset_split(v, "all"), NULL, 0.99, &rv, &nv) != TL_OK) _exit(1);
        if (nh != nv || nh != 3) _exit(2);
        for (size_t i = 0; i < nh; i++)
            if (strcmp(rh[i].feature, rv[i].feature) != 0 || !(rh[i].auc == rv[i].auc)) {
                printf("%s: auc %.17g with hash buckets, %.17g with a vocabulary\n", rh[i].feature, rh[i].auc,
                       rv[i].auc);
                fflush(stdout);
                _exit(2);
            }
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    tl_dataset_free(h);
    tl_dataset_free(v);
}

static void test_leakage_clean(void **state)
{
    (void)state;
    tl_dataset *d = leak_dataset(0);
    tl_leak_row *r = NULL;
    size_t n = 0;
    const char *cols[1] = {"click"};
    assert_int_equal(tl_diagnose_leakage(d, tl_dataset_split(d, "all"), cols, 0.99, &r, &n), TL_OK);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < n; i++) assert_false(r[i].leak);
    tl_diagnose_leakage_free(r);
    tl_dataset_free(d);
}

/* ---- task gradients ------------------------------------------------------------ */

static size_t shared_span(tl_model *m)
{
    const tl_param_info *p = tl_graph_param(m->g, m->n_shared_params - 1);
    return p->offset + (size_t)p->rows * (size_t)p->cols;
}

/* The diagnostics against per-task gradients obtained the plain way: loss
 * weights set one-hot, one forward, one backward each. The model's own
 * weights are (2, 0.5): the diagnostics report raw task gradients and those
 * effective weights. */
static void test_grad_cosine_independent(void **state)
{
    (void)state;
    tdata d;
    make_data(&d, 64, 9);
    tl_model *m = make_model(TL_BACKBONE_MMOE, 0.0f, -1);
    tl_graph *g = tl_model_graph(m);
    size_t n = shared_span(m), pf;
    tl_graph_grads(g, &pf);
    float *ref = malloc(2 * n * sizeof *ref);
    tl_model_fill_batch(m, &d.s, NULL, 0, 64);
    assert_int_equal(tl_graph_forward(g, 1), TL_OK);
    for (int k = 0; k < 2; k++) {
        assert_int_equal(tl_model_set_weight(m, 0, k == 0 ? 1.0f : 0.0f), TL_OK);
        assert_int_equal(tl_model_set_weight(m, 1, k == 1 ? 1.0f : 0.0f), TL_OK);
        assert_int_equal(tl_graph_backward_run(g), TL_OK);
        memcpy(ref + (size_t)k * n, tl_graph_grads(g, NULL), n * sizeof(float));
        tl_graph_zero_grad(g);
    }
    double dot = 0.0, n0 = 0.0, n1 = 0.0;
    for (size_t i = 0; i < n; i++) {
        dot += (double)ref[i] * (double)ref[n + i];
        n0 += (double)ref[i] * (double)ref[i];
        n1 += (double)ref[n + i] * (double)ref[n + i];
    }
    double cos = dot / sqrt(n0 * n1);
    assert_int_equal(tl_model_set_weight(m, 0, 2.0f), TL_OK);
    assert_int_equal(tl_model_set_weight(m, 1, 0.5f), TL_OK);
    tl_diag_record r;
    assert_int_equal(tl_model_task_gradients(m, &r), TL_OK);
    print_message("cos %.6f (diagnostics %.6f), norms %.6g %.6g\n", cos, (double)r.grad_cos[0][1],
                  sqrt(n0), sqrt(n1));
    assert_true(fabs(cos) > 1e-3); /* a non-degenerate case */
    assert_true(fabs((double)r.grad_cos[0][1] - cos) < 1e-5);
    assert_true(r.grad_cos[1][0] == r.grad_cos[0][1] && r.grad_cos[0][0] == 1.0f);
    assert_true(fabs((double)r.grad_norm[0] - sqrt(n0)) < 1e-5 * sqrt(n0));
    assert_true(fabs((double)r.grad_norm[1] - sqrt(n1)) < 1e-5 * sqrt(n1));
    assert_true(r.weight[0] == 2.0f && r.weight[1] == 0.5f);
    /* gradients are left zero, loss weights as they were */
    const float *gr = tl_graph_grads(g, NULL);
    for (size_t i = 0; i < pf; i++) assert_true(gr[i] == 0.0f);
    assert_true(tl_model_effective_weight(m, 0) == 2.0f);
    free(ref);
    tl_model_free(m);
    free_data(&d);
}

/* fit{diagnostics=3} records every third step and changes nothing else:
 * with expert dropout, parameters after training match a run without. */
static void test_diagnostics_do_not_change_training(void **state)
{
    (void)state;
    tdata d;
    make_data(&d, 320, 4);
    float *p[2];
    size_t pf = 0;
    for (int run = 0; run < 2; run++) {
        tl_model *m = make_model(TL_BACKBONE_MMOE, 0.3f, -1);
        tl_fit_options o;
        tl_fit_defaults(&o);
        o.epochs = 2;
        o.batch = 32;
        o.restore_best = 0;
        o.diagnostics = run == 0 ? 3 : 0;
        assert_int_equal(tl_model_fit(m, &d.s, NULL, &o), TL_OK);
        const tl_diag_record *h;
        size_t nh = tl_model_history_diagnostics(m, &h);
        if (run == 0) {
            assert_int_equal(nh, 20 / 3);
            for (size_t i = 0; i < nh; i++) {
                assert_int_equal(h[i].step, 3 * (int64_t)(i + 1));
                assert_true(h[i].grad_norm[0] > 0.0f && h[i].grad_norm[1] > 0.0f);
                assert_true(fabsf(h[i].grad_cos[0][1]) <= 1.0f);
            }
            assert_int_equal(h[nh - 1].epoch, 2);
        } else {
            assert_int_equal(nh, 0);
        }
        float *w = tl_graph_params(tl_model_graph(m), &pf);
        p[run] = malloc(pf * sizeof(float));
        memcpy(p[run], w, pf * sizeof(float));
        tl_model_free(m);
    }
    assert_memory_equal(p[0], p[1], pf * sizeof(float));
    free(p[0]);
    free(p[1]);
    free_data(&d);
}

/* ---- task spaces ------------------------------------------------------------------- */

/* cvr is trained in the space of ctr: changing the features of rows with
 * ctr = 0 leaves cvr's gradient unchanged (and changes ctr's, so the
 * change is felt), while changing an in-space row changes it. */
static void test_space_ignores_outside_rows(void **state)
{
    (void)state;
    tdata d, e;
    make_data(&d, 64, 21);
    make_data(&e, 64, 21);
    tl_model *m = make_model(TL_BACKBONE_MMOE, 0.0f, 0);
    size_t pf;
    tl_graph_grads(tl_model_graph(m), &pf);
    float *g[5];
    for (int i = 0; i < 5; i++) g[i] = malloc(pf * sizeof(float));
    int out = 0, in_row = -1;
    for (size_t i = 0; i < 64; i++) {
        if (d.labels[i * 2] > 0.5f) {
            if (in_row < 0) in_row = (int)i;
            continue;
        }
        out++;
        for (int f = 0; f < N_CAT; f++) e.cat[i * N_CAT + (size_t)f] = (e.cat[i * N_CAT + (size_t)f] + 1) % VOCAB;
        for (int j = 0; j < N_NUM; j++) e.num[i * N_NUM + (size_t)j] += 0.7f;
    }
    assert_true(out > 5 && in_row >= 0);
    tl_model_fill_batch(m, &d.s, NULL, 0, 64);
    assert_int_equal(tl_model_task_gradient(m, 1, g[0]), TL_OK);
    assert_int_equal(tl_model_task_gradient(m, 0, g[1]), TL_OK);
    tl_model_fill_batch(m, &e.s, NULL, 0, 64);
    assert_int_equal(tl_model_task_gradient(m, 1, g[2]), TL_OK);
    assert_int_equal(tl_model_task_gradient(m, 0, g[3]), TL_OK);
    assert_true(tlt_close_f("cvr gradient without the out-of-space rows' features", g[2], g[0], pf,
                            1e-5, 1e-7));
    int differs = 0;
    for (size_t i = 0; i < pf; i++) differs += fabsf(g[3][i] - g[1][i]) > 1e-6f;
    assert_true(differs > 0); /* ctr, trained on every row, sees the change */
    /* an in-space row changed: cvr's gradient moves */
    e.num[(size_t)in_row * N_NUM] += 0.9f;
    tl_model_fill_batch(m, &e.s, NULL, 0, 64);
    assert_int_equal(tl_model_task_gradient(m, 1, g[4]), TL_OK);
    differs = 0;
    for (size_t i = 0; i < pf; i++) differs += fabsf(g[4][i] - g[2][i]) > 1e-7f;
    assert_true(differs > 0);
    for (int i = 0; i < 5; i++) free(g[i]);
    tl_model_free(m);
    free_data(&d);
    free_data(&e);
}

static int setup(void **state)
{
    (void)state;
    tmp = tlt_tempdir_new();
    return tmp ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tlt_tempdir_free(tmp);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gates_mmoe),
        cmocka_unit_test(test_gates_omoe),
        cmocka_unit_test(test_gates_ple),
        cmocka_unit_test(test_gates_errors),
        cmocka_unit_test(test_collapse_unused_expert),
        cmocka_unit_test(test_leakage_flags_copies),
        cmocka_unit_test(test_leakage_clean),
        cmocka_unit_test(test_leakage_huge_hash_sized_by_rows),
        cmocka_unit_test(test_grad_cosine_independent),
        cmocka_unit_test(test_diagnostics_do_not_change_training),
        cmocka_unit_test(test_space_ignores_outside_rows),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
