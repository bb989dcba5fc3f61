/* l_leakage.c — the label-leakage warning tl.data.csv prints when it builds
 * a dataset (see l_leakage.h). Engine calls and stderr only: it sits below
 * l_data.c, which calls it, and l_diagnose.c (d:leakage), which shares its
 * threshold. */
#include "l_leakage.h"

#include <stdio.h>
#include <string.h>

#include "diagnose.h"

void tl_lua_leakage_warn(const tl_dataset *d, const tl_data_schema *schema)
{
    const tl_split *s = tl_dataset_split(d, "train");
    if (!s) s = tl_dataset_split(d, "all");
    int K = tl_dataset_n_tasks(d);
    if (!s || s->n == 0 || K > TL_MAX_TASKS) return;
    const char *cols[TL_MAX_TASKS] = {NULL};
    for (int t = 0; t < K; t++)
        for (int i = 0; i < schema->n_labels; i++)
            if (schema->labels[i].keep && schema->labels[i].task &&
                strcmp(schema->labels[i].task, tl_dataset_task_name(d, t)) == 0)
                cols[t] = schema->labels[i].column;
    tl_leak_row *rows = NULL;
    size_t n = 0;
    if (tl_diagnose_leakage(d, s, cols, TL_LUA_LEAK_THRESHOLD, &rows, &n) != TL_OK) return;
    for (size_t i = 0; i < n; i++) {
        const tl_leak_row *r = &rows[i];
        if (!r->leak) continue;
        if (r->source)
            fprintf(stderr, "tl.data.csv: warning: feature '%s' is the label source column of task "
                            "'%s' (kept with keep=true): label leakage\n",
                    r->feature, tl_dataset_task_name(d, r->task));
        else
            fprintf(stderr, "tl.data.csv: warning: feature '%s' predicts task '%s' almost perfectly "
                            "on the %s split (single-feature AUC %.4f): label leakage? (d:leakage() "
                            "lists every feature)\n",
                    r->feature, tl_dataset_task_name(d, r->task), s->name, r->auc);
    }
    tl_diagnose_leakage_free(rows);
}
