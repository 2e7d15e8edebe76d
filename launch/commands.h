/* commands.h: the `tessera` subcommands; each takes main's argv and returns an exit code
 * (cli.h: 0 ok, 1 failure while running, 2 bad usage or input). */
#ifndef TS_COMMANDS_H
#define TS_COMMANDS_H

int ts_cmd_train(int argc, char **argv);
int ts_cmd_eval(int argc, char **argv);
int ts_cmd_sample(int argc, char **argv);
int ts_cmd_prepare(int argc, char **argv);
int ts_cmd_tokenize(int argc, char **argv);
int ts_cmd_tokenizer(int argc, char **argv);
int ts_cmd_info(int argc, char **argv);
int ts_cmd_ckpt(int argc, char **argv);
int ts_cmd_export(int argc, char **argv);
int ts_cmd_launch(int argc, char **argv);
int ts_cmd_cost(int argc, char **argv);
int ts_cmd_plan(int argc, char **argv);
int ts_cmd_report(int argc, char **argv);

/* `tessera train --check-world N` (train_check.c): the job's checks for N ranks, no job. */
struct ts_train_flags;
int ts_train_check(struct ts_train_flags *flags, int world);

#endif
