/* writer.c: saves in the background: one save in flight, its HDF5 I/O on a thread of its own.
 *
 * Why: a save of GPT-2 124M stalls training for seconds while the files are written; the
 * state needs only to be copied. The caller copies it into host buffers it reuses and starts
 * the save; a writer thread writes and fsyncs this rank's file (and rank 0 model.h5's whole
 * tensors), and training goes on. Every collective stays on the calling (training) thread, at
 * step boundaries: MPI is initialised MPI_THREAD_FUNNELED, and the MPI build of HDF5 is not
 * thread-safe, so HDF5 runs only on the writer thread and MPI only on the caller's. At each
 * boundary the caller polls: the ranks agree (one small all-reduce) whether every rank's file is
 * written; once it is, rank 0's writer commits (manifest, model.h5, rename, `latest`, pruning),
 * and at a later boundary rank 0 broadcasts the verdict. The state machine moves only on
 * collective results, so every rank polls, agrees and learns the verdict at the same boundary.
 * With a synchronous writer (--sync-save) every phase runs at once on the calling thread. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checkpoint/ckpt_impl.h"
#include "kernels/log.h"

enum job { JOB_NONE, JOB_WRITE, JOB_COMMIT, JOB_ABANDON, JOB_QUIT };

struct ts_ckpt_writer {
    bool async;
    int pending; /* 0 idle, 1 rank files being written, 2 rank 0 committing (agreed) */
    struct ckpt_save_job job;
    struct ts_ckpt_blob *blobs; /* copies: the caller's blobs may live on its stack */
    struct ts_ckpt_tensor *tensors;
    struct ts_ckpt_saved done_q[2]; /* completed saves not yet taken */
    int num_done;
    /* shared with the thread, under mu */
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    enum job req;      /* what the thread is asked to do (JOB_NONE: nothing) */
    bool finished;     /* the last request has finished */
    ts_status done_st; /* its status and message */
    char done_msg[1024];
    double t_done;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static ts_status run_job(struct ckpt_save_job *j, enum job kind) {
    switch (kind) {
    case JOB_WRITE:
        return ckpt_save_write(j);
    case JOB_COMMIT:
        return ckpt_save_commit(j);
    case JOB_ABANDON:
        ckpt_save_abandon(j);
        return TS_OK;
    case JOB_NONE:
    case JOB_QUIT:
        break;
    }
    return TS_OK;
}

static void *thread_main(void *arg) {
    ts_ckpt_writer_t *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->req == JOB_NONE)
            pthread_cond_wait(&w->cv, &w->mu);
        const enum job kind = w->req;
        if (kind == JOB_QUIT)
            break;
        pthread_mutex_unlock(&w->mu);
        const ts_status st = run_job(&w->job, kind);
        pthread_mutex_lock(&w->mu);
        w->done_st = st;
        snprintf(w->done_msg, sizeof(w->done_msg), "%s", st == TS_OK ? "" : ts_last_error());
        w->t_done = now_s();
        w->req = JOB_NONE;
        w->finished = true;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Starts `kind` on the thread, or runs it here for a synchronous writer. */
static void submit(ts_ckpt_writer_t *w, enum job kind) {
    if (!w->async) {
        w->done_st = run_job(&w->job, kind);
        snprintf(w->done_msg, sizeof(w->done_msg), "%s",
                 w->done_st == TS_OK ? "" : ts_last_error());
        w->t_done = now_s();
        w->finished = true;
        return;
    }
    pthread_mutex_lock(&w->mu);
    w->finished = false;
    w->req = kind;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Whether the last request has finished (waiting for it when `wait`); its status in *st. */
static bool finished(ts_ckpt_writer_t *w, bool wait, ts_status *st) {
    if (w->async) {
        pthread_mutex_lock(&w->mu);
        while (wait && !w->finished)
            pthread_cond_wait(&w->cv, &w->mu);
        pthread_mutex_unlock(&w->mu);
    }
    *st = w->done_st;
    return w->finished;
}

/* The thread's failure as this thread's error (messages are per thread). */
static ts_status raise_done(ts_ckpt_writer_t *w) { return ts_error(w->done_st, "%s", w->done_msg); }

ts_status ts_ckpt_writer_create(ts_ckpt_writer_t **out, bool async) {
    *out = NULL;
    ts_ckpt_writer_t *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return ts_error(TS_ERR_OOM, "checkpoint writer: out of memory");
    w->async = async;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (async) {
        /* the thread starts with every signal blocked, so SIGTERM, SIGUSR1 and SIGINT reach the
         * training thread (which acts on them) and never interrupt the writer's I/O */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        const int rc = pthread_create(&w->thread, NULL, thread_main, w);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc != 0) {
            pthread_mutex_destroy(&w->mu);
            pthread_cond_destroy(&w->cv);
            free(w);
            return ts_error(TS_ERR_IO, "checkpoint writer: cannot start its thread: %s",
                            strerror(rc));
        }
        w->thread_started = true;
    }
    *out = w;
    return TS_OK;
}

bool ts_ckpt_writer_busy(const ts_ckpt_writer_t *w) { return w != NULL && w->pending != 0; }

ts_status ts_ckpt_writer_begin(ts_ckpt_writer_t *w, const struct ts_ckpt_save_args *a) {
    if (w->pending != 0)
        return ts_error(TS_ERR_INVALID_ARG,
                        "checkpoint writer: a save is in flight (wait for it before the next)");
    /* the tensor table and the blobs are copied; the tensors' data stays the caller's */
    free(w->tensors);
    free(w->blobs);
    w->tensors = NULL;
    w->blobs = NULL;
    struct ts_ckpt_save_args copy = *a;
    if (a->num_tensors > 0 && a->tensors != NULL) {
        w->tensors = malloc((size_t)a->num_tensors * sizeof(*w->tensors));
        if (w->tensors == NULL)
            return ts_error(TS_ERR_OOM, "checkpoint writer: out of memory");
        memcpy(w->tensors, a->tensors, (size_t)a->num_tensors * sizeof(*w->tensors));
        copy.tensors = w->tensors;
    }
    if (a->num_blobs > 0 && a->blobs != NULL) {
        size_t bytes = (size_t)a->num_blobs * sizeof(*w->blobs);
        for (int i = 0; i < a->num_blobs; i++)
            bytes += a->blobs[i].size;
        w->blobs = malloc(bytes);
        if (w->blobs == NULL)
            return ts_error(TS_ERR_OOM, "checkpoint writer: out of memory");
        char *data = (char *)(w->blobs + a->num_blobs);
        for (int i = 0; i < a->num_blobs; i++) {
            w->blobs[i] = a->blobs[i];
            if (a->blobs[i].size > 0)
                memcpy(data, a->blobs[i].data, a->blobs[i].size);
            w->blobs[i].data = data;
            data += a->blobs[i].size;
        }
        copy.blobs = w->blobs;
    }
    TS_CHECK(ckpt_save_prepare(&w->job, &copy));
    w->pending = 1;
    submit(w, JOB_WRITE);
    return TS_OK;
}

/* Phase 1 finished everywhere? The ranks agree; on success rank 0 starts the commit. */
static ts_status poll_written(ts_ckpt_writer_t *w, bool wait) {
    ts_status mine;
    const bool done = finished(w, wait, &mine);
    double v[2] = {done ? 0.0 : 1.0, done && mine != TS_OK ? 1.0 : 0.0};
    TS_CHECK(ts_comm_all_reduce_host(w->job.args.comm, v, 2, TS_REDUCE_MAX));
    if (v[0] > 0)
        return TS_OK; /* some rank is still writing */
    if (v[1] > 0) {   /* some rank failed: nothing is committed */
        const ts_status st =
            mine != TS_OK ? raise_done(w)
                          : ts_error(TS_ERR_COMM, "checkpoint save: another rank failed while "
                                                  "writing its rank file (see its log); nothing "
                                                  "was committed");
        submit(w, JOB_ABANDON);
        ts_status ignored;
        (void)finished(w, true, &ignored);
        w->pending = 0;
        return st;
    }
    w->pending = 2;
    if (w->job.rank == 0)
        submit(w, JOB_COMMIT);
    return TS_OK;
}

/* Rank 0's commit finished? Its verdict for every rank. */
static ts_status poll_committed(ts_ckpt_writer_t *w, bool wait) {
    struct {
        int done, status;
        double save_s;
    } v = {0, 0, 0.0};
    if (w->job.rank == 0) {
        ts_status st;
        v.done = finished(w, wait, &st);
        v.status = (int)st;
        v.save_s = w->t_done - w->job.t_begin;
    }
    TS_CHECK(ts_comm_broadcast_host(w->job.args.comm, &v, sizeof(v), 0));
    if (!v.done)
        return TS_OK;
    w->pending = 0;
    if (v.status != TS_OK) {
        const ts_status st =
            w->job.rank == 0
                ? raise_done(w)
                : ts_error((ts_status)v.status, "checkpoint save: rank 0 could not commit the "
                                                "checkpoint (see its log)");
        if (w->job.rank == 0) {
            submit(w, JOB_ABANDON);
            ts_status ignored;
            (void)finished(w, true, &ignored);
        }
        return st;
    }
    struct ts_ckpt_saved *s = &w->done_q[w->num_done < 2 ? w->num_done++ : 1];
    s->step = w->job.meta.step;
    s->save_s = v.save_s;
    return ts_path_join(s->path, sizeof(s->path), w->job.args.dir, w->job.final_name);
}

ts_status ts_ckpt_writer_poll(ts_ckpt_writer_t *w, bool wait) {
    if (w->pending == 1)
        TS_CHECK(poll_written(w, wait));
    if (w->pending == 2)
        TS_CHECK(poll_committed(w, wait));
    return TS_OK;
}

bool ts_ckpt_writer_take(ts_ckpt_writer_t *w, struct ts_ckpt_saved *out) {
    if (w->num_done == 0)
        return false;
    *out = w->done_q[0];
    w->done_q[0] = w->done_q[1];
    w->num_done--;
    return true;
}

void ts_ckpt_writer_drain(ts_ckpt_writer_t *w) {
    if (w == NULL || w->pending == 0)
        return;
    ts_status st;
    (void)finished(w, true, &st);
    /* alone, a written save needs no one to agree: commit it, so it is not lost */
    if (w->pending == 1 && st == TS_OK && w->job.world == 1) {
        TS_LOG_I("checkpoint: finishing the save of step %lld before exiting",
                 (long long)w->job.meta.step);
        submit(w, JOB_COMMIT);
        (void)finished(w, true, &st);
        if (st != TS_OK)
            TS_LOG_W("checkpoint: the save of step %lld failed: %s", (long long)w->job.meta.step,
                     w->done_msg);
    }
    w->pending = 0;
}

void ts_ckpt_writer_destroy(ts_ckpt_writer_t *w) {
    if (w == NULL)
        return;
    ts_ckpt_writer_drain(w);
    if (w->thread_started) {
        pthread_mutex_lock(&w->mu);
        w->req = JOB_QUIT;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->thread, NULL);
    }
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w->tensors);
    free(w->blobs);
    free(w);
}
