# cmake -DDIR=<artifact dir> -P TvmOfaCheckArtifact.cmake
# Run after `tvm-ofa compile`: a build must fail here, naming the directory, rather than later
# in a consumer with a missing-file error far from its cause.
foreach(f model.so metadata.json)
  if(NOT EXISTS "${DIR}/${f}")
    message(FATAL_ERROR "${DIR}/${f}: not written by tvm-ofa compile (check its --out layout)")
  endif()
endforeach()
# touch so the outputs are newer than the inputs even if the compiler reused a cached artifact
file(TOUCH "${DIR}/model.so" "${DIR}/metadata.json")
