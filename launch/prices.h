/* prices.h: what a run's device-hours and kWh cost: the flags, else a prices table.
 *
 * The table is JSON: {"usd_per_kwh": X, "usd_per_device_hour": {"<device key>": Y, ...}}, the
 * key a row of the peak table (launch/peak.c: "H100 SXM", "A100 80GB", ...) or "cpu" (one CPU
 * rank). The repository's table is launch/prices.json, copied beside the built binary and
 * installed as <prefix>/share/tessera/prices.json; --prices FILE replaces it. */
#ifndef TS_LAUNCH_PRICES_H
#define TS_LAUNCH_PRICES_H

#include <stddef.h>

#include "launch/ledger.h"

/* The repository's table: <dir of the binary>/prices.json (a build tree), else
 * <dir of the binary>/../share/tessera/prices.json (an install). TS_ERR_IO when neither exists. */
ts_status ts_prices_default_path(char *out, size_t len) TS_MUST_CHECK;

/* The prices for `device_key`: per_hour / per_kwh when >= 0 (from `given_by`: "flags", "the run's
 * record"), the rest from `file`
 * (NULL: the repository's table, whose absence only means no price). A given file that cannot be
 * read or parsed, or a negative price in it, is an error naming it. A missing value is < 0 in
 * *out; out->source says where each came from. */
ts_status ts_prices_resolve(const char *file, double per_hour, double per_kwh,
                            const char *device_key, const char *given_by,
                            struct ts_ledger_prices *out) TS_MUST_CHECK;

#endif
