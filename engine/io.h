/* io.h — model checkpoints: versioned, checksummed, written atomically.
 *
 * A checkpoint holds everything a model needs to continue training exactly
 * where it stopped: the configuration (as plain data), every parameter, the
 * optimizer (kind, configuration, state blocks, step count), the graph's
 * dropout RNG and PCGrad's RNG, step/epoch counters and the position inside
 * the current epoch, loss weights and the weighting strategy's state, and the
 * training history. Loading never executes anything from the file: every
 * value is read as data, every length is bounds-checked first, and the model
 * is rebuilt from the configuration through tl_model_new.
 *
 * File layout (all integers and floats little-endian, floats IEEE-754):
 *
 *   offset 0   magic      8 bytes  89 'T' 'L' 'M' 0d 0a 1a 0a
 *          8   version    u32      TL_IO_FORMAT_VERSION
 *         12   reserved   u32      0
 *         16   length     u64      total file length in bytes, CRC included
 *         24   sections   ...      each: tag u32 (four ASCII characters, first
 *                                  one in the lowest byte), flags u32, size u64,
 *                                  then `size` bytes of payload
 *   length-4   crc32      u32      zlib crc32 of bytes [0, length-4)
 *
 * Sections written by this version: CONF (configuration), PARM (parameters,
 * each with name and shape), OPTM (optimizer), TRNS (counters and RNGs),
 * WGHT (weighting state), HSTP and HEPO (step and epoch history). New sections
 * (calibrators: CALB) can be added without a version bump: a reader skips a
 * section whose tag it does not know, unless its flags have TL_IO_CRITICAL
 * set (then it refuses the file, as PNG does with critical chunks). A known
 * section may grow new fields at its end; older readers ignore them.
 */
#ifndef TL_IO_H
#define TL_IO_H

#include "io_file.h"
#include "model.h"

#define TL_IO_FORMAT_VERSION 1u
#define TL_IO_CRITICAL 1u

/* Write m to `path` atomically: the bytes go to a temporary file in the same
 * directory, which is flushed and fsync'ed, then renamed over `path`, and the
 * directory is fsync'ed. On any failure (disk full, read-only or missing
 * directory, path is a directory) returns TL_ERR_IO with the path and the
 * errno text in the message (TL_ERR_NOMEM when memory runs out), removes the
 * temporary file and leaves an existing file at `path` untouched (symbolic
 * links and stale temporaries: tl_io_write_atomic, io_file.h). */
tl_status tl_model_save(tl_model *m, const char *path);

/* Read a checkpoint into a new model (*out, owned by the caller; NULL on
 * failure). A missing or unreadable file is TL_ERR_IO; a file that is not a
 * checkpoint (bad magic), truncated, corrupted (checksum mismatch), written
 * by a newer format version, or inconsistent (a parameter's name or shape does
 * not match the configuration) is TL_ERR_FORMAT with a message saying which. */
tl_status tl_model_load(const char *path, tl_model **out);
/* tl_model_load with the model's memory budget: max_memory bytes (0 = the
 * available memory, as tl_model_new checks it). */
tl_status tl_model_load_limit(const char *path, uint64_t max_memory, tl_model **out);

/* Write the predictions for every row of s to a CSV file at `path`: a
 * header "row,<task>,..." then one line per row: the row's 1-based data row
 * in its source file (s->row; its place in the split without it) and one
 * value per task (probability for binary tasks, calibrated with the attached
 * output calibrators when `calibrated`), %.9g. Rows are predicted in chunks
 * of whole batches (memory O(chunk), the values those of tl_model_predict);
 * the file is written beside path and renamed, so a failure leaves an
 * existing file intact. Labels are not needed. */
tl_status tl_model_predict_csv(tl_model *m, const tl_split *s, int calibrated, const char *path);

#endif
