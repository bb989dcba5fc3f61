/* support.c — see support.h. Test-only code: plain malloc, messages on stdout. */
#include "support.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- gradient checking ---------------------------------------------------- */

tlt_gradcheck_opts tlt_gradcheck_defaults(void)
{
    tlt_gradcheck_opts o = {0};
    o.eps = 1e-2;
    o.atol = 1e-3;
    o.rtol = 1e-2;
    o.kink = 1.0;
    o.max_per_param = 0;
    o.training = 0;
    o.seed = 12345;
    return o;
}

float *tlt_param(tl_graph *g, tl_node p)
{
    int i = tl_graph_param_index(g, p);
    if (i < 0) return NULL;
    return tl_graph_params(g, NULL) + tl_graph_param(g, i)->offset;
}

float *tlt_param_grad(tl_graph *g, tl_node p)
{
    int i = tl_graph_param_index(g, p);
    if (i < 0) return NULL;
    return tl_graph_grads(g, NULL) + tl_graph_param(g, i)->offset;
}

void tlt_fill_uniform(float *x, size_t n, float lo, float hi, tl_rng *rng)
{
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * tl_rng_uniform(rng);
}

/* Forward with the dropout RNG rewound to *rng0 (training runs), loss in *f. */
static int eval_loss(tl_graph *g, tl_node loss, int training, const tl_rng *rng0, double *f)
{
    if (training) *tl_graph_rng(g) = *rng0;
    if (tl_graph_forward(g, training) != TL_OK) {
        printf("gradcheck: forward run failed: %s\n", tl_errmsg());
        return -1;
    }
    *f = (double)tl_graph_value(g, loss)[0];
    return 0;
}

/* Central and one-sided differences of the loss in *x with step e; the
 * steps actually taken (x0 +- e rounded to float) are used, in double. */
static int probe(tl_graph *g, tl_node loss, const tlt_gradcheck_opts *o, const tl_rng *rng0,
                 float *x, double e, double f0, double *num, double *left, double *right)
{
    float x0 = *x, xp = (float)((double)x0 + e), xm = (float)((double)x0 - e);
    double fp, fm;
    *x = xp;
    int e1 = eval_loss(g, loss, o->training, rng0, &fp);
    *x = xm;
    int e2 = eval_loss(g, loss, o->training, rng0, &fm);
    *x = x0;
    if (e1 || e2) return -1;
    *num = (fp - fm) / ((double)xp - (double)xm);
    *left = (f0 - fm) / ((double)x0 - (double)xm);
    *right = (fp - f0) / ((double)xp - (double)x0);
    return 0;
}

int tlt_gradcheck(tl_graph *g, tl_node loss, const tlt_gradcheck_opts *opts,
                  tlt_gradcheck_result *r)
{
    tlt_gradcheck_opts o = opts ? *opts : tlt_gradcheck_defaults();
    tlt_gradcheck_result res = {0, 0, 0, 0.0};
    tl_rng rng0 = *tl_graph_rng(g), pick;
    tl_rng_seed(&pick, o.seed);
    size_t nf;
    float *w = tl_graph_params(g, &nf);
    double f0;

    tl_graph_zero_grad(g);
    if (eval_loss(g, loss, o.training, &rng0, &f0) != 0) return -1;
    tl_rng rng_after = *tl_graph_rng(g);
    if (tl_graph_backward_run(g) != TL_OK) {
        printf("gradcheck: backward run failed: %s\n", tl_errmsg());
        return -1;
    }
    float *ana = malloc((nf ? nf : 1) * sizeof *ana);
    if (!ana) return -1;
    memcpy(ana, tl_graph_grads(g, NULL), nf * sizeof *ana);

    int rc = 0;
    for (int pi = 0; pi < tl_graph_param_count(g) && rc == 0; pi++) {
        const tl_param_info *p = tl_graph_param(g, pi);
        uint32_t n = (uint32_t)p->rows * (uint32_t)p->cols, m = n;
        uint32_t *idx = malloc((size_t)n * sizeof *idx);
        if (!idx) {
            rc = -1;
            break;
        }
        for (uint32_t i = 0; i < n; i++) idx[i] = i;
        if (o.max_per_param > 0 && n > (uint32_t)o.max_per_param) {
            m = (uint32_t)o.max_per_param;
            for (uint32_t i = 0; i < m; i++) { /* partial Fisher–Yates */
                uint32_t j = i + (uint32_t)tl_rng_below(&pick, n - i), t = idx[i];
                idx[i] = idx[j];
                idx[j] = t;
            }
        }
        for (uint32_t c = 0; c < m; c++) {
            float *x = w + p->offset + idx[c];
            double a = (double)ana[p->offset + idx[c]], num = 0.0, err = 0.0, tol = 0.0;
            int kink = 0, pass = 0;
            /* A failure is retried once with a step 8x smaller before it is
             * judged: that shrinks the window in which a kink can fall. */
            for (double e = o.eps; !pass && e >= o.eps / 8.0; e /= 8.0) {
                double left, right;
                if (probe(g, loss, &o, &rng0, x, e, f0, &num, &left, &right) != 0) {
                    rc = -1;
                    break;
                }
                tol = o.atol + o.rtol * fmax(fabs(a), fabs(num));
                err = fabs(a - num);
                pass = err <= tol;
                kink = fabs(left - right) > o.kink * err;
            }
            if (rc != 0) break;
            if (pass) {
                res.checked++;
                if (err / tol > res.worst) res.worst = err / tol;
            } else if (kink) {
                res.skipped++;
            } else {
                res.checked++;
                res.failed++;
                if (!(err / tol <= res.worst)) res.worst = err / tol;
                if (res.failed <= 10)
                    printf("gradcheck: parameter '%s' [%d x %d] element %u (row %u, col %u): "
                           "analytical %.7g, numerical %.7g\n",
                           p->name, p->rows, p->cols, idx[c], idx[c] / (uint32_t)p->cols,
                           idx[c] % (uint32_t)p->cols, a, num);
            }
        }
        free(idx);
    }
    /* Leave values and gradients as one forward + backward left them. */
    if (rc == 0 && eval_loss(g, loss, o.training, &rng0, &f0) != 0) rc = -1;
    *tl_graph_rng(g) = rng_after;
    memcpy(tl_graph_grads(g, NULL), ana, nf * sizeof *ana);
    free(ana);
    if (r) *r = res;
    if (rc != 0) return rc;
    if (res.failed)
        printf("gradcheck: %d of %d points failed (%d skipped at kinks)\n", res.failed,
               res.checked, res.skipped);
    return res.failed;
}

/* ---- comparison ------------------------------------------------------------ */

static int close_impl(const char *what, const float *got, const float *wantf, const double *wantd,
                      size_t n, double rtol, double atol)
{
    size_t bad = 0, worst = 0;
    double worst_ratio = -1.0;
    for (size_t i = 0; i < n; i++) {
        double a = (double)got[i], b = wantd ? wantd[i] : (double)wantf[i];
        double tol = atol + rtol * fmax(fabs(a), fabs(b));
        double ratio = fabs(a - b) / tol;
        if (!(ratio <= 1.0)) {
            bad++;
            if (isnan(ratio)) ratio = INFINITY;
        }
        if (ratio > worst_ratio) {
            worst_ratio = ratio;
            worst = i;
        }
    }
    if (bad == 0) return 1;
    double b = wantd ? wantd[worst] : (double)wantf[worst];
    printf("%s: %zu of %zu elements differ (rtol %g, atol %g); worst [%zu]: got %.9g, "
           "want %.9g\n", what, bad, n, rtol, atol, worst, (double)got[worst], b);
    return 0;
}

int tlt_close(const char *what, const float *got, const double *want, size_t n, double rtol,
              double atol)
{
    return close_impl(what, got, NULL, want, n, rtol, atol);
}

int tlt_close_f(const char *what, const float *got, const float *want, size_t n, double rtol,
                double atol)
{
    return close_impl(what, got, want, NULL, n, rtol, atol);
}

/* ---- fixtures ---------------------------------------------------------------- */

static const char *skip_space(const char *s)
{
    for (;;) {
        while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
        if (*s != '#') return s;
        while (*s && *s != '\n') s++;
    }
}

void tlt_fixture_free(tlt_fixture *f)
{
    if (!f) return;
    for (int i = 0; i < f->n; i++) free(f->a[i].v);
    free(f->a);
    free(f);
}

tlt_fixture *tlt_fixture_load(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        printf("fixture %s: cannot open\n", path);
        return NULL;
    }
    fseek(fp, 0, SEEK_END);
    long len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    tlt_fixture *f = calloc(1, sizeof *f);
    if (!buf || !f || fread(buf, 1, (size_t)len, fp) != (size_t)len) {
        printf("fixture %s: cannot read\n", path);
        fclose(fp);
        free(buf);
        free(f);
        return NULL;
    }
    fclose(fp);
    buf[len] = '\0';
    const char *s = skip_space(buf);
    while (*s) {
        tlt_array arr = {{0}, 0, 0, NULL};
        int used = 0;
        if (sscanf(s, "%63s %d %d%n", arr.name, &arr.rows, &arr.cols, &used) != 3 ||
            arr.rows < 1 || arr.cols < 1) {
            printf("fixture %s: bad header near offset %ld\n", path, (long)(s - buf));
            goto fail;
        }
        s += used;
        size_t n = (size_t)arr.rows * (size_t)arr.cols;
        arr.v = malloc(n * sizeof *arr.v);
        tlt_array *grown = realloc(f->a, (size_t)(f->n + 1) * sizeof *grown);
        if (!arr.v || !grown) {
            free(arr.v);
            if (grown) f->a = grown;
            goto fail;
        }
        f->a = grown;
        for (size_t i = 0; i < n; i++) {
            char *end;
            s = skip_space(s);
            arr.v[i] = strtod(s, &end);
            if (end == s) {
                printf("fixture %s: array '%s' has %zu of %zu numbers\n", path, arr.name, i, n);
                free(arr.v);
                goto fail;
            }
            s = end;
        }
        f->a[f->n++] = arr;
        s = skip_space(s);
    }
    free(buf);
    return f;
fail:
    free(buf);
    tlt_fixture_free(f);
    return NULL;
}

const tlt_array *tlt_fixture_get(const tlt_fixture *f, const char *name, int rows, int cols)
{
    for (int i = 0; i < f->n; i++) {
        const tlt_array *a = &f->a[i];
        if (strcmp(a->name, name) != 0) continue;
        if ((rows > 0 && a->rows != rows) || (cols > 0 && a->cols != cols)) {
            printf("fixture array '%s' is [%d x %d], expected [%d x %d]\n", name, a->rows,
                   a->cols, rows, cols);
            return NULL;
        }
        return a;
    }
    printf("fixture array '%s' not found\n", name);
    return NULL;
}

void tlt_array_to_float(const tlt_array *a, float *out)
{
    size_t n = (size_t)a->rows * (size_t)a->cols;
    for (size_t i = 0; i < n; i++) out[i] = (float)a->v[i];
}

/* ---- temporary directory ---------------------------------------------------- */

char *tlt_tempdir_new(void)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    size_t n = strlen(base) + 32;
    char *dir = malloc(n);
    if (!dir) return NULL;
    snprintf(dir, n, "%s/towerlab-test-XXXXXX", base);
    if (!mkdtemp(dir)) {
        printf("cannot create a temporary directory under %s\n", base);
        free(dir);
        return NULL;
    }
    return dir;
}

/* Remove path: files directly, directories after their contents. */
static void rm_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            size_t n = strlen(path) + strlen(e->d_name) + 2;
            char *sub = malloc(n);
            if (!sub) break;
            snprintf(sub, n, "%s/%s", path, e->d_name);
            rm_tree(sub);
            free(sub);
        }
        if (d) closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

void tlt_tempdir_free(char *dir)
{
    if (!dir) return;
    rm_tree(dir);
    free(dir);
}
