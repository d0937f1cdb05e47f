// libmosquitto's API as Swift imports it: mosquitto.h has no macros or variadic calls that
// Swift cannot reach, so this only includes it.
#include <mosquitto.h>
