/*
 * options.h - handler options: validation of the YAML `handler.options`
 * mapping against a plugin's declared options, and the typed getters the
 * host table hands to plugins.
 *
 * exactly_options_build() checks every key against decls (an unknown key is
 * an error that lists the valid ones; a missing required option, a value of
 * the wrong type, an int that does not parse or a bool that is not
 * true/false each name the file, line, column and option) and fills in
 * defaults. The result is owned by the caller: exactly_options_free()
 * (NULL-safe).
 */
#ifndef EXACTLY_OPTIONS_H
#define EXACTLY_OPTIONS_H

#include "config/config.h"
#include "exactly/handler.h"
#include "util/strbuf.h"

exactly_err exactly_options_build(const char *file, const char *handler_name,
                                  const cfg_value *yaml_options,
                                  const exactly_option_decl *decls,
                                  size_t n_decls, exactly_options **out,
                                  char *errbuf, size_t errbuf_size);

void exactly_options_free(exactly_options *opts);

/*
 * Appends the reference of a handler's declared options to out, as
 * config/reference.h prints a section: a heading naming path, doc, and a
 * table of the options with their types, defaults and descriptions.
 * Returns EXACTLY_OK; EXACTLY_EPLUGIN when the declarations are invalid
 * (as exactly_options_build() says, in errbuf); EXACTLY_ENOMEM.
 */
exactly_err exactly_options_reference(strbuf *out, const char *path,
                                      const char *doc,
                                      const char *handler_name,
                                      const exactly_option_decl *decls,
                                      size_t n_decls, char *errbuf,
                                      size_t errbuf_size);

/* The getters that go into exactly_host. Asking for an undeclared name or
 * with the wrong type is a plugin bug: they return NULL / 0 and log it. */
const char *exactly_options_string(const exactly_options *opts,
                                   const char *name);
int64_t exactly_options_int(const exactly_options *opts, const char *name);
int exactly_options_bool(const exactly_options *opts, const char *name);
size_t exactly_options_list(const exactly_options *opts, const char *name,
                            const char *const **items);
size_t exactly_options_map(const exactly_options *opts, const char *name,
                           const char *const **keys,
                           const char *const **values);

#endif
