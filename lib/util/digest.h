/*
 * digest.h - SHA-256 (OpenSSL's libcrypto) for keys that must be stored
 * at a fixed size whatever a message carries: dedup keys and the digest
 * of a dead letter's full message key.
 */
#ifndef EXACTLY_DIGEST_H
#define EXACTLY_DIGEST_H

#include <stddef.h>

#define EXACTLY_SHA256_HEX_LEN 64

/* Writes the SHA-256 of data[0..len) into out as 64 lower-case hex digits
 * and a NUL. Returns 0, or -1 when libcrypto fails (out of memory). */
int exactly_sha256_hex(const void *data, size_t len,
                       char out[EXACTLY_SHA256_HEX_LEN + 1]);

#endif
