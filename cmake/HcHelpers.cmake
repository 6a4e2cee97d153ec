# Declarative helpers in the spirit of absl_cc_library: every source is listed explicitly.
#
#   hc_cc_library(NAME hc_io SRCS a.cc HDRS a.h DEPS hc_base absl::status PRIVATE_DEPS ...)
#   hc_cc_test(NAME io_test SRCS io_test.cc DEPS hc_io)
#   hc_cc_binary(NAME hyperc SRCS main.cc DEPS ...)

set(HC_WARNING_FLAGS -Wall -Wextra -Wno-unused-parameter)
if(HC_WERROR)
  list(APPEND HC_WARNING_FLAGS -Werror)
endif()

function(hc_cc_library)
  cmake_parse_arguments(HC "" "NAME" "SRCS;HDRS;DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(${HC_NAME} STATIC ${HC_SRCS} ${HC_HDRS})
  target_include_directories(${HC_NAME} PUBLIC ${PROJECT_SOURCE_DIR})
  target_link_libraries(${HC_NAME} PUBLIC ${HC_DEPS} PRIVATE ${HC_PRIVATE_DEPS})
  target_compile_options(${HC_NAME} PRIVATE ${HC_WARNING_FLAGS})
endfunction()

function(hc_cc_binary)
  cmake_parse_arguments(HC "" "NAME" "SRCS;DEPS" ${ARGN})
  add_executable(${HC_NAME} ${HC_SRCS})
  target_link_libraries(${HC_NAME} PRIVATE ${HC_DEPS})
  target_compile_options(${HC_NAME} PRIVATE ${HC_WARNING_FLAGS})
endfunction()

# Test binaries land in build/tests; each gtest case becomes one ctest test. LABELS are ctest
# labels (e.g. "unit", "models", "e2e") so CI can pick subsets.
function(hc_cc_test)
  cmake_parse_arguments(HC "" "NAME;TIMEOUT" "SRCS;DEPS;LABELS" ${ARGN})
  add_executable(${HC_NAME} ${HC_SRCS})
  target_link_libraries(${HC_NAME} PRIVATE ${HC_DEPS} GTest::gmock GTest::gtest_main)
  target_compile_options(${HC_NAME} PRIVATE ${HC_WARNING_FLAGS})
  set_target_properties(${HC_NAME} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/tests)
  if(NOT HC_TIMEOUT)
    set(HC_TIMEOUT 300)
  endif()
  if(NOT HC_LABELS)
    set(HC_LABELS unit)
  endif()
  gtest_discover_tests(${HC_NAME}
    DISCOVERY_TIMEOUT 60
    PROPERTIES TIMEOUT ${HC_TIMEOUT} LABELS "${HC_LABELS}"
               ENVIRONMENT "HC_SOURCE_DIR=${PROJECT_SOURCE_DIR};HC_BINARY_DIR=${PROJECT_BINARY_DIR}")
endfunction()

include(GoogleTest)
