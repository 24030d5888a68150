#include "base/quote.h"

#include <doctest/doctest.h>

#include <string>

using sparkgate::base::quote_for_message;

TEST_CASE("quote_for_message quotes short printable values and hides everything else") {
  CHECK(quote_for_message("kid-1") == "'kid-1'");
  CHECK(quote_for_message("") == "''");
  CHECK(quote_for_message(std::string(120, 'a')) == "'" + std::string(120, 'a') + "'");
  CHECK(quote_for_message(std::string(121, 'a')) == "(unprintable)");
  CHECK(quote_for_message("abc", 2) == "(unprintable)");
  CHECK(quote_for_message("line\nforged") == "(unprintable)");
  CHECK(quote_for_message("it's") == "(unprintable)");
  CHECK(quote_for_message("caf\xc3\xa9") == "(unprintable)");
  CHECK(quote_for_message(std::string("a\0b", 3)) == "(unprintable)");
}
