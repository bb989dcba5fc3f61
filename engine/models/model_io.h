/* models/model_io.h — the model's checkpoint sections, for io.c's section
 * table: each a write and a read through the codec (layout in io.h). io.c
 * keeps the file format (header, section framing, CRC) and the sections it
 * can write from the model's public interface (CONF, PARM); these need the
 * model's internals, which stay in models/.
 *
 * A write appends the section's payload to c (c->w); a read takes it from c
 * (c->r) into the model built from CONF, returning TL_ERR_FORMAT with
 * c->r->bad saying why when the section is corrupted, or another status with
 * its own message (out of memory, a bad calibrator).
 */
#ifndef TL_MODEL_IO_H
#define TL_MODEL_IO_H

#include "codec.h"
#include "model.h"

/* OPTM: the optimizer (kind, configuration, steps, state; then the schedule). */
void tl_model_io_optm_write(tl_codec *c, tl_model *m);
tl_status tl_model_io_optm_read(tl_codec *c, tl_model *m, const char *path);
/* TRNS: step and epoch counters, the place in the epoch, the RNGs. */
void tl_model_io_trns_write(tl_codec *c, tl_model *m);
tl_status tl_model_io_trns_read(tl_codec *c, tl_model *m, const char *path);
/* WGHT: the weighting strategy's section, which it writes and reads itself. */
void tl_model_io_wght_write(tl_codec *c, tl_model *m);
tl_status tl_model_io_wght_read(tl_codec *c, tl_model *m, const char *path);
/* HSTP and HEPO: the step and epoch history. */
void tl_model_io_hstp_write(tl_codec *c, tl_model *m);
tl_status tl_model_io_hstp_read(tl_codec *c, tl_model *m, const char *path);
void tl_model_io_hepo_write(tl_codec *c, tl_model *m);
tl_status tl_model_io_hepo_read(tl_codec *c, tl_model *m, const char *path);
/* CALB: output and CrossDistil teacher calibrators, and when they were fitted. */
void tl_model_io_calb_write(tl_codec *c, tl_model *m);
tl_status tl_model_io_calb_read(tl_codec *c, tl_model *m, const char *path);

#endif
