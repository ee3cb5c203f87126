# packd_library(NAME DIR DEPS...): a static library of every *.cc in DIR that is
# not a test (*_test.cc); each *_test.cc in DIR becomes a GoogleTest binary
# registered with ctest (label "unit"), linked against the library.
# Globbing keeps parallel work from colliding on CMake edits; CONFIGURE_DEPENDS
# makes a new file show up at the next build.
function(packd_library name)
  cmake_parse_arguments(ARG "" "" "DEPS" ${ARGN})
  file(GLOB srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.cc)
  file(GLOB tests CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*_test.cc)
  if(tests)
    list(REMOVE_ITEM srcs ${tests})
  endif()
  if(srcs)
    add_library(${name} STATIC ${srcs})
    target_link_libraries(${name} PUBLIC ${ARG_DEPS})
  else()  # a layer with headers only (so far)
    add_library(${name} INTERFACE)
    target_link_libraries(${name} INTERFACE ${ARG_DEPS})
  endif()
  foreach(test_src ${tests})
    get_filename_component(test_name ${test_src} NAME_WE)
    add_executable(${test_name} ${test_src})
    target_link_libraries(${test_name} PRIVATE ${name} packd_testing GTest::gtest_main GTest::gmock)
    add_test(NAME ${test_name} COMMAND ${test_name})
    set_tests_properties(${test_name} PROPERTIES LABELS "unit"
      ENVIRONMENT "PACKD_SHARED_DIR=${CMAKE_SOURCE_DIR}/../shared")
  endforeach()
endfunction()
