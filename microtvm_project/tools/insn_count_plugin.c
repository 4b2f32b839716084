/*
 * insn_count_plugin.c - a QEMU TCG plugin (API v1, QEMU 7.x) that counts executed guest
 * instructions exactly: in total, inside address ranges, and at marker addresses.
 *
 * Debian ships no qemu-plugin.h, so the few API functions used are declared here.
 * Build: gcc -shared -fPIC -O2 -o insn_count_plugin.so insn_count_plugin.c
 * Use:   qemu-system-arm ... -plugin insn_count_plugin.so,range=NAME:START:END,mark=ADDR
 *        -d plugin -D plugin.log
 *   range=NAME:START:END  count instructions with START <= pc < END (hex or decimal)
 *   mark=ADDR             record the running total each time the instruction at ADDR runs
 * Output (at exit, through qemu_plugin_outs, i.e. the -D log file):
 *   MPQ_INSN total <n>
 *   MPQ_INSN range <name> <n>
 *   MPQ_INSN mark <addr-hex> <total-so-far>      (one line per execution, in order)
 * Counts are of instructions started (an inline add runs before each instruction).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t; /* opaque here: never dereferenced */
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*udata_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *insn,
                                                enum qemu_plugin_op op, void *ptr, uint64_t imm);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn, vcpu_udata_cb_t cb,
                                            enum qemu_plugin_cb_flags flags, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, udata_cb_t cb, void *userdata);
void qemu_plugin_outs(const char *string);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

#define MAX_RANGES 64
#define MAX_MARKS 16
static struct { char name[64]; uint64_t start, end, count; } ranges[MAX_RANGES];
static int n_ranges;
static uint64_t marks[MAX_MARKS];
static int n_marks;
static uint64_t total;
static uint64_t *log_pc, *log_total; /* marker hits, grown on demand */
static size_t n_log, cap_log;

static void on_mark(unsigned int vcpu_index, void *userdata)
{
    (void)vcpu_index;
    if (n_log == cap_log) {
        cap_log = cap_log ? 2 * cap_log : 1024;
        log_pc = realloc(log_pc, cap_log * sizeof *log_pc);
        log_total = realloc(log_total, cap_log * sizeof *log_total);
        if (!log_pc || !log_total) abort();
    }
    log_pc[n_log] = (uint64_t)(uintptr_t)userdata;
    log_total[n_log++] = total;
}

static void on_tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    for (size_t i = 0, n = qemu_plugin_tb_n_insns(tb); i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint64_t pc = qemu_plugin_insn_vaddr(insn);
        qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &total, 1);
        for (int r = 0; r < n_ranges; r++)
            if (pc >= ranges[r].start && pc < ranges[r].end)
                qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64,
                                                           &ranges[r].count, 1);
        for (int m = 0; m < n_marks; m++)
            if (pc == marks[m])
                qemu_plugin_register_vcpu_insn_exec_cb(insn, on_mark, QEMU_PLUGIN_CB_NO_REGS,
                                                       (void *)(uintptr_t)pc);
    }
}

static void report_at_exit(qemu_plugin_id_t id, void *userdata)
{
    char line[160];
    (void)id, (void)userdata;
    snprintf(line, sizeof line, "MPQ_INSN total %" PRIu64 "\n", total);
    qemu_plugin_outs(line);
    for (int r = 0; r < n_ranges; r++) {
        snprintf(line, sizeof line, "MPQ_INSN range %.63s %" PRIu64 "\n", ranges[r].name,
                 ranges[r].count);
        qemu_plugin_outs(line);
    }
    for (size_t k = 0; k < n_log; k++) {
        snprintf(line, sizeof line, "MPQ_INSN mark 0x%" PRIx64 " %" PRIu64 "\n", log_pc[k],
                 log_total[k]);
        qemu_plugin_outs(line);
    }
}

__attribute__((visibility("default"))) int
qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    (void)info;
    for (int i = 0; i < argc; i++) {
        char *end;
        if (strncmp(argv[i], "range=", 6) == 0 && n_ranges < MAX_RANGES) {
            char *name = argv[i] + 6, *colon = strchr(name, ':');
            if (!colon || (size_t)(colon - name) >= sizeof ranges[0].name) goto bad;
            memcpy(ranges[n_ranges].name, name, (size_t)(colon - name));
            ranges[n_ranges].start = strtoull(colon + 1, &end, 0);
            if (*end != ':') goto bad;
            ranges[n_ranges].end = strtoull(end + 1, &end, 0);
            if (*end) goto bad;
            n_ranges++;
        } else if (strncmp(argv[i], "mark=", 5) == 0 && n_marks < MAX_MARKS) {
            marks[n_marks++] = strtoull(argv[i] + 5, &end, 0);
            if (*end) goto bad;
        } else {
            goto bad;
        }
        continue;
    bad:
        fprintf(stderr, "insn_count_plugin: bad or too many arguments: %s\n", argv[i]);
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb_trans);
    qemu_plugin_register_atexit_cb(id, report_at_exit, NULL);
    return 0;
}
