/* energy.c: the backend's counter or RAPL, read for the ledger (energy.h). */
#include "launch/energy.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static bool read_u64(const char *path, uint64_t *out) {
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    const bool ok = fscanf(f, "%" SCNu64, out) == 1;
    fclose(f);
    return ok;
}

void ts_energy_init(struct ts_energy *e, struct ts_backend *be, const char *root) {
    memset(e, 0, sizeof(*e));
    struct ts_backend_info info;
    be->info(be, &info);
    if (info.has_energy && be->energy_mj != NULL) {
        e->be = be;
        snprintf(e->what, sizeof(e->what), "%s energy counter (NVML)", info.name);
        return;
    }
    if (strcmp(be->name, "cpu") != 0) {
        snprintf(e->what, sizeof(e->what), "not measured: %s has no energy counter", info.name);
        return;
    }
    /* the package domains intel-rapl:N (not their subdomains intel-rapl:N:M) */
    for (int i = 0; i < TS_ENERGY_MAX_PKG; i++) {
        char dir[128], path[192];
        snprintf(dir, sizeof(dir), "%s/sys/class/powercap/intel-rapl:%d", root, i);
        snprintf(path, sizeof(path), "%s/energy_uj", dir);
        uint64_t uj, range = 0;
        if (!read_u64(path, &uj))
            break;
        snprintf(path, sizeof(path), "%s/max_energy_range_uj", dir);
        if (!read_u64(path, &range))
            range = 0;
        snprintf(e->pkg[e->num_pkg], sizeof(e->pkg[0]), "%s/energy_uj", dir);
        e->last_uj[e->num_pkg] = uj;
        e->range_uj[e->num_pkg] = range;
        e->num_pkg++;
    }
    if (e->num_pkg > 0)
        snprintf(e->what, sizeof(e->what),
                 "RAPL: %d CPU package(s), whole packages (other processes included)", e->num_pkg);
    else
        snprintf(e->what, sizeof(e->what),
                 "not measured: no readable /sys/class/powercap/intel-rapl:*/energy_uj");
}

bool ts_energy_read(struct ts_energy *e, double *joules) {
    if (e->be != NULL) {
        uint64_t mj;
        if (e->be->energy_mj(e->be, &mj) != TS_OK)
            return false;
        *joules = (double)mj * 1e-3;
        return true;
    }
    if (e->num_pkg == 0)
        return false;
    for (int i = 0; i < e->num_pkg; i++) {
        uint64_t uj;
        if (!read_u64(e->pkg[i], &uj))
            return false;
        const uint64_t d = uj >= e->last_uj[i] ? uj - e->last_uj[i]
                                               : e->range_uj[i] - e->last_uj[i] + uj; /* wrap */
        e->total_j += (double)d * 1e-6;
        e->last_uj[i] = uj;
    }
    *joules = e->total_j;
    return true;
}
