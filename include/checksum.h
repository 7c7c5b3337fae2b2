/* migfix — Prisma migration checksums (pure C, no Lua).
 *
 * Prisma's checksum is the SHA-256 of the migration.sql bytes, each byte
 * rendered as two lowercase hex digits (64 characters). Stored checksums are
 * compared tolerantly: the script as is, with CRLF -> LF, and with every
 * LF -> CRLF; a stored value that is non-empty and not 64 characters long is
 * compared with the legacy format, where bytes were not zero-padded
 * (prisma-engines checksum.rs, issue #1887). */
#ifndef MIGFIX_CHECKSUM_H
#define MIGFIX_CHECKSUM_H

#include <stddef.h>

#define MF_SHA256_LEN 32
#define MF_CHECKSUM_HEX_LEN 64 /* without the terminating NUL */

/* Raw SHA-256 (engine/crypto.c). Returns 0, or -1 if OpenSSL failed. */
int mf_sha256(const void *data, size_t len, unsigned char out[MF_SHA256_LEN]);
/* Lowercase, zero-padded hex SHA-256 into out (65 bytes, NUL-terminated).
 * Returns 0, or -1 if OpenSSL failed. (engine/crypto.c) */
int mf_sha256_hex(const void *data, size_t len, char out[MF_CHECKSUM_HEX_LEN + 1]);

/* Prisma's checksum of a script: same as mf_sha256_hex. (engine/migrations.c) */
int mf_checksum(const char *script, size_t len, char out[MF_CHECKSUM_HEX_LEN + 1]);
/* The legacy rendering ("{:x}" per byte, no zero padding; 32..64 chars). */
int mf_checksum_legacy(const char *script, size_t len, char out[MF_CHECKSUM_HEX_LEN + 1]);
/* Prisma's script_matches_checksum: 1 if it matches, 0 if not, -1 on an
 * allocation or OpenSSL failure. */
int mf_checksum_matches(const char *script, size_t len, const char *stored, size_t stored_len);

/* ---- the text of migration.sql (engine/migrations.c) ---- */

/* The first byte Prisma cannot take as it is: a NUL (unless nul_ok) or the
 * start of an ill-formed UTF-8 sequence. 0 when clean; else 1, *off its
 * byte offset, *kind 'n' (NUL) or 'u' (UTF-8). */
int mf_text_check(const char *s, size_t len, int nul_ok, size_t *off, char *kind);
/* The text as Node's fs.readFile(path, 'utf-8') reads it (WHATWG decoder:
 * U+FFFD per maximal ill-formed subpart). out holds 3 * len bytes; returns
 * the length written. */
size_t mf_text_as_prisma_reads(const char *s, size_t len, char *out);
/* 1-based line and byte column of byte offset off of s. */
void mf_text_position(const char *s, size_t off, size_t *line, size_t *col);

#endif
