# The Debian package: `cpack -G DEB` in a build directory (scripts/
# package.sh makes a Release build for it). Its files are those of
# `cmake --install` under /usr; its Depends come from dpkg-shlibdeps on the
# binaries (librdkafka1, libpq5, libyaml-0-2, libjansson4, libmicrohttpd12,
# libc6 on Debian 12) plus adduser for the postinst, which creates the
# `exactly` system user that exactly@.service runs as and /etc/exactly.
set(CPACK_PACKAGE_NAME exactly)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR exactly)
set(CPACK_PACKAGE_CONTACT "exactly <dev@exactly.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "exactly-once Kafka consumer that applies messages to PostgreSQL")
set(CPACK_PACKAGE_DESCRIPTION
    "A worker reads Kafka with read_committed, looks up the entity each\n\
message names in PostgreSQL, hands the rows to a handler plugin that\n\
writes with upserts, and stores the partition's next offset in the same\n\
PostgreSQL transaction. Includes the exactly-produce tool, the plugin\n\
headers with a pkg-config file, man pages, a systemd unit template\n\
(exactly@.service) and example configurations and plugins.")
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES TRUE)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION database)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS adduser)
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "pkg-config, gcc | c-compiler")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${CMAKE_CURRENT_LIST_DIR}/deb/postinst ${CMAKE_CURRENT_LIST_DIR}/deb/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
include(CPack)
