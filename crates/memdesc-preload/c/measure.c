/* measure.c: runs one program and reports its wall time and peak RSS.
 *
 * Usage: measure OUT PROGRAM [ARGS...]. Runs PROGRAM with its standard
 * streams inherited; when MEASURE_PRELOAD is set, the child (and only the
 * child, not this process) gets it as LD_PRELOAD. Writes to the file OUT one
 * line: "<wall ns> <peak RSS KiB> <wait status>", the wall time taken from
 * fork to the child's exit and the RSS from wait4's rusage of that child
 * alone. Exits with 0 if it could run the child, whatever the child did.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: measure OUT PROGRAM [ARGS...]\n");
        return 2;
    }
    const char *preload = getenv("MEASURE_PRELOAD");
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    pid_t pid = fork();
    if (pid < 0) {
        perror("measure: fork");
        return 2;
    }
    if (pid == 0) {
        unsetenv("MEASURE_PRELOAD");
        if (preload && *preload) setenv("LD_PRELOAD", preload, 1);
        execv(argv[2], argv + 2);
        perror("measure: exec");
        _exit(127);
    }
    int status = 0;
    struct rusage usage;
    if (wait4(pid, &status, 0, &usage) != pid) {
        perror("measure: wait4");
        return 2;
    }
    clock_gettime(CLOCK_MONOTONIC, &end);
    long long ns = (long long)(end.tv_sec - start.tv_sec) * 1000000000LL + (end.tv_nsec - start.tv_nsec);
    FILE *out = fopen(argv[1], "w");
    if (!out) {
        perror("measure: opening OUT");
        return 2;
    }
    fprintf(out, "%lld %ld %d\n", ns, usage.ru_maxrss, status);
    return fclose(out) == 0 ? 0 : 2;
}
