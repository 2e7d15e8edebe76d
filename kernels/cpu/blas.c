typedef int ts_wip_; /* work in progress: replaced by the real file */
