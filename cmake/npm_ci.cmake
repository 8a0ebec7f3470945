# Runs `npm ci` in DIR when DIR/node_modules is missing or older than DIR/package-lock.json
# (npm writes node_modules/.package-lock.json on every install). Script mode:
#   cmake -DDIR=<package dir> -DNPM=<npm> -P npm_ci.cmake
# --ignore-scripts: no package's install script runs (esbuild's binary comes from its
# optional @esbuild/<platform> package; playwright-core downloads nothing).
set(marker "${DIR}/node_modules/.package-lock.json")
if(EXISTS "${marker}" AND NOT "${DIR}/package-lock.json" IS_NEWER_THAN "${marker}")
  return()
endif()
message(STATUS "npm ci in ${DIR}")
execute_process(
  COMMAND "${NPM}" ci --no-audit --no-fund --ignore-scripts --loglevel=error
  WORKING_DIRECTORY "${DIR}"
  RESULT_VARIABLE status)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "npm ci in ${DIR} failed (${status}): npm's registry must be reachable "
    "(scripts/setup.sh runs the same install)")
endif()
