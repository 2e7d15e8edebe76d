/* prices.c: the flags, else the prices table (prices.h). */
#include "launch/prices.h"

#include <errno.h>
#include <json-c/json.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kernels/fs.h"

ts_status ts_prices_default_path(char *out, size_t len) {
    char exe[TS_PATH_MAX];
    const ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return ts_error(TS_ERR_IO, "prices: cannot find the binary's directory");
    exe[n] = '\0';
    const char *dir = dirname(exe);
    TS_CHECK(ts_path_fmt(out, len, "%s/prices.json", dir));
    if (access(out, R_OK) == 0)
        return TS_OK;
    TS_CHECK(ts_path_fmt(out, len, "%s/../share/tessera/prices.json", dir));
    if (access(out, R_OK) == 0)
        return TS_OK;
    return ts_error(TS_ERR_IO, "prices: no prices.json beside %s or in ../share/tessera", dir);
}

/* A price of the table: a number >= 0, or an error naming it. */
static ts_status price_of(const char *path, struct json_object *v, const char *what, double *out) {
    if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int))
        return ts_error(TS_ERR_INVALID_ARG, "--prices %s: %s is not a number", path, what);
    *out = json_object_get_double(v);
    if (!(*out >= 0))
        return ts_error(TS_ERR_INVALID_ARG, "--prices %s: %s is negative", path, what);
    return TS_OK;
}

/* The table's values for key (< 0 where it has none). */
static ts_status read_table(const char *path, const char *key, double *hour, double *kwh) {
    *hour = *kwh = -1;
    struct json_object *o = json_object_from_file(path);
    if (o == NULL)
        return ts_error(TS_ERR_INVALID_ARG, "--prices %s: cannot read it as JSON (%s)", path,
                        json_util_get_last_err());
    ts_status st = TS_OK;
    struct json_object *v = NULL, *table = NULL;
    char what[96];
    if (json_object_object_get_ex(o, "usd_per_kwh", &v))
        st = price_of(path, v, "usd_per_kwh", kwh);
    snprintf(what, sizeof(what), "usd_per_device_hour[\"%.60s\"]", key);
    if (st == TS_OK && json_object_object_get_ex(o, "usd_per_device_hour", &table) &&
        json_object_object_get_ex(table, key, &v))
        st = price_of(path, v, what, hour);
    json_object_put(o);
    return st;
}

ts_status ts_prices_resolve(const char *file, double per_hour, double per_kwh,
                            const char *device_key, const char *given_by,
                            struct ts_ledger_prices *out) {
    memset(out, 0, sizeof(*out));
    out->usd_per_device_hour = per_hour;
    out->usd_per_kwh = per_kwh;
    if (per_hour >= 0 && per_kwh >= 0) {
        snprintf(out->source, sizeof(out->source), "%s", given_by);
        return TS_OK;
    }
    char path[TS_PATH_MAX];
    if (file != NULL) {
        TS_CHECK(ts_path_fmt(path, sizeof(path), "%s", file));
    } else if (ts_prices_default_path(path, sizeof(path)) != TS_OK) {
        snprintf(out->source, sizeof(out->source), "%s; no price table found",
                 per_hour >= 0 || per_kwh >= 0 ? given_by : "none");
        return TS_OK;
    }
    double hour, kwh;
    TS_CHECK(read_table(path, device_key, &hour, &kwh));
    if (per_hour < 0)
        out->usd_per_device_hour = hour;
    if (per_kwh < 0)
        out->usd_per_kwh = kwh;
    snprintf(out->source, sizeof(out->source), "%s%s%.200s%s",
             per_hour >= 0 || per_kwh >= 0 ? given_by : "",
             per_hour >= 0 || per_kwh >= 0 ? " and " : "", path,
             hour < 0 && per_hour < 0 ? " (no row for this device)" : "");
    return TS_OK;
}
