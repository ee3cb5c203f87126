# packd_library(NAME [SUBDIRS dir...] DEPS...): a static library of every *.cc
# in the current directory (and in each SUBDIR) that is not a test
# (*_test.cc); each *_test.cc becomes a GoogleTest binary registered with ctest
# (label "unit"), linked against the library. Test file names must be unique
# across the project (the binary is named after the file).
# With CUDA (PACKD_HAVE_CUDA), the *.cu files of the same folders join the
# library and it links the CUDA runtime and cuBLAS; without it they are
# ignored, so *.cc files must never include a CUDA header. Tests named
# *_gpu_test.cc get the label "gpu" instead (they skip, saying why, when no
# device is present).
# Globbing keeps parallel work from colliding on CMake edits; CONFIGURE_DEPENDS
# makes a new file show up at the next build.
function(packd_library name)
  cmake_parse_arguments(ARG "" "" "DEPS;SUBDIRS" ${ARGN})
  set(globs ${CMAKE_CURRENT_SOURCE_DIR}/*.cc)
  set(test_globs ${CMAKE_CURRENT_SOURCE_DIR}/*_test.cc)
  foreach(dir ${ARG_SUBDIRS})
    list(APPEND globs ${CMAKE_CURRENT_SOURCE_DIR}/${dir}/*.cc)
    list(APPEND test_globs ${CMAKE_CURRENT_SOURCE_DIR}/${dir}/*_test.cc)
  endforeach()
  file(GLOB srcs CONFIGURE_DEPENDS ${globs})
  if(PACKD_HAVE_CUDA)
    set(cu_globs)
    foreach(g ${globs})
      string(REGEX REPLACE "\\.cc$" ".cu" g ${g})
      list(APPEND cu_globs ${g})
    endforeach()
    file(GLOB cu_srcs CONFIGURE_DEPENDS ${cu_globs})
    list(APPEND srcs ${cu_srcs})
  endif()
  file(GLOB tests CONFIGURE_DEPENDS ${test_globs})
  if(tests)
    list(REMOVE_ITEM srcs ${tests})
  endif()
  if(srcs)
    add_library(${name} STATIC ${srcs})
    target_link_libraries(${name} PUBLIC ${ARG_DEPS})
    if(cu_srcs)
      target_link_libraries(${name} PUBLIC CUDA::cudart CUDA::cublas CUDA::cublasLt)
    endif()
  else()  # a layer with headers only (so far)
    add_library(${name} INTERFACE)
    target_link_libraries(${name} INTERFACE ${ARG_DEPS})
  endif()
  foreach(test_src ${tests})
    get_filename_component(test_name ${test_src} NAME_WE)
    add_executable(${test_name} ${test_src})
    target_link_libraries(${test_name} PRIVATE ${name} packd_testing GTest::gtest_main GTest::gmock)
    add_test(NAME ${test_name} COMMAND ${test_name})
    set(label unit)
    if(test_name MATCHES "_gpu_test$")
      set(label gpu)
    endif()
    set_tests_properties(${test_name} PROPERTIES LABELS ${label}
      ENVIRONMENT "PACKD_SHARED_DIR=${CMAKE_SOURCE_DIR}/../shared")
  endforeach()
endfunction()

# packd_tsan_tests(TEST...): the named tests (each a test and an executable of
# the same name, defined before the call in the same folder, as packd_library
# above defines them) also run under
# ThreadSanitizer: they get the ctest label "tsan", and the target
# packd_tsan_tests builds them. scripts/tsan.sh (run by scripts/test.sh, so in
# CI) configures build-tsan with -DPACKD_SANITIZE=thread, builds that target and
# runs `ctest -L tsan`. To add a test, name it in its folder's CMakeLists.txt,
# e.g. in server/CMakeLists.txt:
#   packd_tsan_tests(model_instance_test my_new_stress_test)
# Suitable tests: threaded code over absl::Mutex/CondVar (TSan sees those
# through base/tsan/absl_sync.cc); not tests that drive gRPC or other
# uninstrumented libraries' threads (false reports). The TSan build is a few
# times slower than the normal one: keep such tests to seconds.
function(packd_tsan_tests)
  foreach(test_name ${ARGN})
    set_property(TEST ${test_name} APPEND PROPERTY LABELS tsan)
    set_property(GLOBAL APPEND PROPERTY PACKD_TSAN_TARGETS ${test_name})
  endforeach()
endfunction()
