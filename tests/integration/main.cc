// doctest runner for the integration suite. See harness.h for the environment it needs.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
