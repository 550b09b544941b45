/* SPDX-License-Identifier: MIT */
/* tools/json.h — the one JSON string writer of the command-line tools
 * (precopy-probe, precopy-sim's reports). Not part of libprecopy: the
 * tools and libprecopy-sim.a link tools/json.c.
 *
 * The output is always a valid JSON string in valid UTF-8, whatever the
 * bytes given (a path is bytes, not text, on Linux):
 *  - '"' and '\' are escaped with a backslash;
 *  - bytes below 0x20 are written \u00XX;
 *  - valid UTF-8 sequences (RFC 3629: shortest form, no surrogates,
 *    at most U+10FFFF) are copied;
 *  - every byte that does not start a valid sequence becomes U+FFFD,
 *    written as the escape \ufffd (one per byte).
 * U+FFFD rather than \u00XX: "\u00ff" would claim the character ÿ, a
 * different name than the file has; U+FFFD says that a byte was not text.
 * The original bytes are therefore not recoverable from the JSON (a script
 * that needs them uses the argument it passed). The reason is in
 * docs/sim-input.md. */
#ifndef PRECOPY_TOOLS_JSON_H
#define PRECOPY_TOOLS_JSON_H

#include <stddef.h>
#include <stdio.h>

/* Length of the valid UTF-8 sequence at s (at most the NUL-terminated
 * string's rest), 0 if the byte at s does not start one. */
size_t tool_utf8_len(const unsigned char *s);

/* s as a JSON string, quotes included; NULL writes null. Returns 0 or
 * -EIO when f has an error (ferror). */
int tool_json_str(FILE *f, const char *s);

#endif /* PRECOPY_TOOLS_JSON_H */
