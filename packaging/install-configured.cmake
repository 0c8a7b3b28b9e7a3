# Run by `cmake --install` (and CPack): installs the files that name
# installation paths, written for the prefix of this install, so that
# `cmake --install build --prefix P` and the .deb's /usr both get paths
# that exist. Set by the install(CODE) in packaging/CMakeLists.txt:
#   EXACTLY_TEMPLATES   packaging/ in the source tree
#   EXACTLY_STAGE       a build directory to write the files in first
#   EXACTLY_VERSION     the project version
#   EXACTLY_BINDIR, EXACTLY_INCLUDEDIR, EXACTLY_DATADIR, EXACTLY_UNITDIR
#                       GNUInstallDirs-style paths, relative to the prefix
#                       or absolute
# CMAKE_INSTALL_PREFIX is the prefix of this install (--prefix, or CPack's).

function(exactly_abs out rel)
  if(IS_ABSOLUTE "${rel}")
    set(${out} "${rel}" PARENT_SCOPE)
  else()
    set(${out} "${CMAKE_INSTALL_PREFIX}/${rel}" PARENT_SCOPE)
  endif()
endfunction()

set(EXACTLY_PREFIX "${CMAKE_INSTALL_PREFIX}")
exactly_abs(EXACTLY_BINDIR_ABS "${EXACTLY_BINDIR}")
if(IS_ABSOLUTE "${EXACTLY_INCLUDEDIR}")
  set(EXACTLY_INCLUDEDIR_PC "${EXACTLY_INCLUDEDIR}")
else()
  set(EXACTLY_INCLUDEDIR_PC "\${prefix}/${EXACTLY_INCLUDEDIR}")
endif()

# A directory of its own per install, so that two installs from one build
# tree at once (a test and a package) do not write the same file.
string(RANDOM LENGTH 12 nonce)
set(stage "${EXACTLY_STAGE}/${nonce}")

set(EXACTLY_BINDIR "${EXACTLY_BINDIR_ABS}")
configure_file("${EXACTLY_TEMPLATES}/systemd/exactly@.service.in"
               "${stage}/exactly@.service" @ONLY)
set(EXACTLY_INCLUDEDIR "${EXACTLY_INCLUDEDIR_PC}")
configure_file("${EXACTLY_TEMPLATES}/exactly.pc.in" "${stage}/exactly.pc" @ONLY)

exactly_abs(pcdir "${EXACTLY_DATADIR}/pkgconfig")
exactly_abs(unitdir "${EXACTLY_UNITDIR}")
file(INSTALL DESTINATION "${pcdir}" TYPE FILE FILES "${stage}/exactly.pc")
file(INSTALL DESTINATION "${unitdir}" TYPE FILE FILES "${stage}/exactly@.service")
file(REMOVE_RECURSE "${stage}")
