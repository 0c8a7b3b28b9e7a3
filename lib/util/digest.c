#include "digest.h"

#include <openssl/evp.h>

int exactly_sha256_hex(const void *data, size_t len,
                       char out[EXACTLY_SHA256_HEX_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    unsigned int i;

    if (EVP_Digest(data, len, md, &md_len, EVP_sha256(), NULL) != 1 ||
        md_len != EXACTLY_SHA256_HEX_LEN / 2)
        return -1;
    for (i = 0; i < md_len; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[2 * md_len] = '\0';
    return 0;
}
