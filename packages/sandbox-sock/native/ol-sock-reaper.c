/*
 * ol-sock-reaper: ends a SOCK backend's sandboxes when its worker is gone, however it went.
 *
 *   ol-sock-reaper --tag TAG [--mounts-under DIR] [--netns-prefix TAG-n]
 *     stdin:  PREFIX \0 PARENT \0 [PARENT \0 ...] \0     then held open by the worker
 *     stdout: "ready\n" once the header is read and every PARENT checked
 *
 * Each sandbox's helper kills its sandbox on PR_SET_PDEATHSIG, but on cgroup v1 the SIGKILL to
 * a frozen (paused) sandbox's init stays pending while its cgroup is frozen: after a worker's
 * SIGKILL the paused sandboxes would live on. The backend starts one reaper when it prepares and
 * keeps the write end of its stdin; the kernel closes it when the worker dies, and `cleanup()`
 * closes it after destroying everything. On EOF the reaper takes every cgroup under the
 * PARENTs (or one level further down, in a CPU group) whose name starts with PREFIX (one
 * backend's: another backend on the same work dir has another prefix), freezes it (v1
 * freezer.state, v2 cgroup.freeze), kills its tasks (v2 cgroup.kill, else SIGKILL to each pid in
 * cgroup.procs), thaws it so the kills land, and repeats until no task is left (10 s at most);
 * then it removes those cgroups, leaves the PARENTs and anything else in them, and exits.
 *
 * It must outlive the worker: its own session, SIGINT/SIGTERM/SIGHUP/SIGQUIT/SIGPIPE ignored, no
 * parent-death signal. It acts only inside the PARENTs it was given: each must be an absolute
 * path under /sys/fs/cgroup/ without empty, `.` or `..` components, whose last component is TAG,
 * opened one component at a time without following links, on a cgroup filesystem and not the
 * root of a hierarchy (TAG starts with `ol-`, as the backend's tags do); every file below is
 * opened relative to that directory, again without following links. The PARENTs are reopened
 * at EOF, so a parent that was removed and made again is still the one swept.
 *
 * After the sweep, with --mounts-under DIR (the backend's sandboxes dir), it lazily unmounts
 * every mount under DIR (the sandboxes' disk tmpfs: their pages are memory, held until then),
 * and with --netns-prefix (which must start with TAG) it deletes the network namespaces of that
 * name in /run/netns (what `ip netns delete` does) and its claims on their addresses
 * (/run/ol-egress/<slot>, a link to TAG): a dead worker leaves no disk and no egress link behind. Both act in the reaper's mount namespace, the host's.
 *
 * Exit status: 0 when every matching cgroup is gone, 1 when some could not be emptied or
 * removed in time (said on stderr), 2 when the arguments or the header are refused (nothing
 * was touched).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#define CGROUP_ROOT "/sys/fs/cgroup/"
#define MAX_PARENTS 16
#define MAX_NAME 64
#define HEADER_MAX 8192
#define KILL_TIMEOUT_MS 10000
#define REMOVE_TIMEOUT_MS 2000

static const char *tag;
static char prefix[MAX_NAME + 1];
static char *parents[MAX_PARENTS];
static int nparents;

__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("ol-sock-reaper: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

__attribute__((noreturn)) static void refuse(const char *fmt, const char *arg) {
  say(fmt, arg);
  exit(2);
}

static long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000L + t.tv_nsec / 1000000L;
}

static void sleep_ms(long ms) {
  struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&t, &t) < 0 && errno == EINTR) {
  }
}

/* A tag or prefix: what the backend makes them of, so nothing in one can reach past a dir. */
static int plain_name(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > MAX_NAME) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
          c == '_'))
      return 0;
  }
  return 1;
}

/*
 * Opens PATH as checked in the header comment; -1 (errno set, the reason on stderr when `loud`)
 * when it is not such a directory.
 */
static int open_parent(const char *path, int loud) {
  size_t len = strlen(path);
  if (strncmp(path, CGROUP_ROOT, strlen(CGROUP_ROOT)) != 0 || len >= 4096) {
    if (loud) say("parent %s: not under " CGROUP_ROOT, path);
    errno = EINVAL;
    return -1;
  }
  char copy[4096];
  memcpy(copy, path, len + 1);
  int fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -1;
  const char *last = NULL;
  char *save = NULL;
  for (char *part = strtok_r(copy + 1, "/", &save); part; part = strtok_r(NULL, "/", &save)) {
    if (strcmp(part, ".") == 0 || strcmp(part, "..") == 0) {
      if (loud) say("parent %s: has a . or .. component", path);
      close(fd);
      errno = EINVAL;
      return -1;
    }
    int next = openat(fd, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    close(fd);
    if (next < 0) {
      if (loud) say("parent %s: %s (links are not followed)", path, strerror(errno));
      return -1;
    }
    fd = next;
    last = path + (part - copy);
  }
  /* strtok_r skips empty components: "a//b" and a trailing "/" are refused here instead. */
  struct statfs fs;
  if (strstr(path, "//") || path[len - 1] == '/' || !last || strcmp(last, tag) != 0) {
    if (loud) say("parent %s: its last component must be the tag %s", path, tag);
    close(fd);
    errno = EINVAL;
    return -1;
  }
  if (fstatfs(fd, &fs) < 0 ||
      (fs.f_type != CGROUP_SUPER_MAGIC && fs.f_type != CGROUP2_SUPER_MAGIC)) {
    if (loud) say("parent %s: not on a cgroup filesystem", path);
    close(fd);
    errno = EINVAL;
    return -1;
  }
  /* Never a hierarchy's root: its parent directory is on the same filesystem. */
  struct stat self, up;
  if (fstat(fd, &self) < 0 || fstatat(fd, "..", &up, AT_SYMLINK_NOFOLLOW) < 0 ||
      self.st_dev != up.st_dev) {
    if (loud) say("parent %s: is the root of a cgroup hierarchy", path);
    close(fd);
    errno = EINVAL;
    return -1;
  }
  return fd;
}

/* Reads the header byte by byte: nothing past it is consumed, and it is tiny. */
static void read_header(void) {
  static char buf[HEADER_MAX];
  size_t len = 0;
  int fields = 0;
  for (;;) {
    if (len == sizeof buf) refuse("header longer than %s bytes", "8192");
    ssize_t n = read(0, buf + len, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) refuse("stdin closed before the header ended%s", "");
    if (buf[len++] != 0) continue;
    const char *field = buf;
    for (int i = 0; i < fields; i++) field += strlen(field) + 1;
    if (*field == 0) break; /* the empty field ends the header */
    if (fields == 0) {
      if (!plain_name(field)) refuse("bad prefix %s", field);
      strcpy(prefix, field);
    } else {
      if (nparents == MAX_PARENTS) refuse("more than %s parents", "16");
      if (!(parents[nparents++] = strdup(field))) refuse("out of memory%s", "");
    }
    fields++;
  }
  if (nparents == 0) refuse("no parent given%s", "");
}

/* Writes VALUE to NAME in the cgroup at DIRFD; 0, or -1 with errno (ENOENT: no such file). */
static int put(int dirfd, const char *name, const char *value) {
  int fd = openat(dirfd, name, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = write(fd, value, strlen(value));
  int e = errno;
  close(fd);
  errno = e;
  return n < 0 ? -1 : 0;
}

/* The tasks in the cgroup at DIRFD; when `kill_them`, each gets SIGKILL. */
static int tasks(int dirfd, int kill_them) {
  int fd = openat(dirfd, "cgroup.procs", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return 0;
  FILE *f = fdopen(fd, "r");
  if (!f) {
    close(fd);
    return 0;
  }
  int count = 0;
  long pid;
  while (fscanf(f, "%ld", &pid) == 1) {
    count++;
    if (kill_them && pid > 1 && pid != (long)getpid()) kill((pid_t)pid, SIGKILL);
  }
  fclose(f);
  return count;
}

enum step { FREEZE, KILL, THAW, COUNT, REMOVE };

static int apply(int cfd, enum step step) {
  switch (step) {
    case FREEZE:
      if (put(cfd, "freezer.state", "FROZEN") < 0) put(cfd, "cgroup.freeze", "1");
      return 0;
    case KILL:
      /* cgroup.kill (v2, 5.14+) also gets tasks forked meanwhile; else one by one. */
      if (put(cfd, "cgroup.kill", "1") < 0) tasks(cfd, 1);
      return 0;
    case THAW:
      if (put(cfd, "freezer.state", "THAWED") < 0) put(cfd, "cgroup.freeze", "0");
      return 0;
    case COUNT:
      return tasks(cfd, 0);
    case REMOVE:
      return 0;
  }
  return 0;
}

/*
 * Applies STEP to the cgroups named PREFIX... in the directory DFD (which it closes), and with
 * `depth` > 0 to those one level further down, in the directories of any other name (a
 * backend's CPU groups hold sandbox cgroups too; the groups themselves are left alone). The
 * tasks (COUNT) or cgroups (REMOVE) left.
 */
static int each_in(int dfd, enum step step, int depth) {
  int left = 0;
  int list = dup(dfd);
  DIR *d = list < 0 ? NULL : fdopendir(list);
  if (!d) {
    if (list >= 0) close(list);
    close(dfd);
    return 0;
  }
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_type != DT_DIR || !plain_name(e->d_name)) continue;
    int ours = strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    if (!ours && depth == 0) continue;
    if (ours && step == REMOVE) {
      if (unlinkat(dfd, e->d_name, AT_REMOVEDIR) < 0 && errno != ENOENT) left++;
      continue;
    }
    int cfd = openat(dfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (cfd < 0) continue;
    if (ours) {
      left += apply(cfd, step);
      close(cfd);
    } else {
      left += each_in(cfd, step, depth - 1);
    }
  }
  closedir(d);
  close(dfd);
  return left;
}

/* Applies STEP to every sandbox cgroup of this backend; the tasks (COUNT) or cgroups left. */
static int each(enum step step) {
  int left = 0;
  for (int i = 0; i < nparents; i++) {
    int pfd = open_parent(parents[i], 0);
    /* A parent that is gone was never made, or force cleanup raced us: nothing to do there. */
    if (pfd >= 0) left += each_in(pfd, step, 1);
  }
  return left;
}

/* Empties and removes this backend's sandbox cgroups; 0 when none is left. */
static int sweep(void) {
  long deadline = now_ms() + KILL_TIMEOUT_MS;
  /* Frozen first, so nothing forks while the first round of kills goes out; a frozen task
   * keeps its SIGKILL pending and dies as soon as it is thawed, without running again. */
  each(FREEZE);
  int left;
  for (;;) {
    each(KILL);
    each(THAW);
    left = each(COUNT);
    if (left == 0 || now_ms() >= deadline) break;
    sleep_ms(10);
  }
  if (left > 0) say("%d task(s) still alive after %d ms", left, KILL_TIMEOUT_MS);
  /* An emptied cgroup can stay busy for a moment while its last tasks are released. */
  deadline = now_ms() + REMOVE_TIMEOUT_MS;
  int busy;
  while ((busy = each(REMOVE)) > 0 && now_ms() < deadline) sleep_ms(10);
  if (busy > 0) say("%d cgroup(s) could not be removed", busy);
  return left > 0 || busy > 0;
}

/* mountinfo escapes space, tab, newline and backslash in paths as \ooo; undone in place. */
static void unescape(char *s) {
  char *out = s;
  for (char *in = s; *in; in++) {
    if (in[0] == '\\' && in[1] >= '0' && in[1] <= '7' && in[2] >= '0' && in[2] <= '7' &&
        in[3] >= '0' && in[3] <= '7') {
      *out++ = (char)(((in[1] - '0') << 6) | ((in[2] - '0') << 3) | (in[3] - '0'));
      in += 3;
    } else {
      *out++ = *in;
    }
  }
  *out = 0;
}

/* Lazily unmounts every mount point below `dir`, the newest (deepest) first. */
static int unmount_under(const char *dir) {
  FILE *f = fopen("/proc/self/mountinfo", "re");
  if (!f) return 1;
  size_t dlen = strlen(dir);
  char *points[1024];
  int n = 0;
  char *line = NULL;
  size_t cap = 0;
  while (getline(&line, &cap, f) > 0 && n < 1024) {
    /* id parent major:minor root MOUNTPOINT ... */
    char *save = NULL, *field = strtok_r(line, " ", &save);
    for (int i = 0; field && i < 4; i++) field = strtok_r(NULL, " ", &save);
    if (!field) continue;
    unescape(field);
    if (strncmp(field, dir, dlen) == 0 && field[dlen] == '/') points[n++] = strdup(field);
  }
  free(line);
  fclose(f);
  int failed = 0;
  for (int i = n - 1; i >= 0; i--) {
    if (points[i] && umount2(points[i], MNT_DETACH | UMOUNT_NOFOLLOW) < 0 && errno != EINVAL &&
        errno != ENOENT) {
      say("unmount %s: %s", points[i], strerror(errno));
      failed = 1;
    }
    free(points[i]);
  }
  return failed;
}

/* Deletes /run/netns/PREFIX* as `ip netns delete` does: unmount the nsfs bind, unlink it. */
static int remove_namespaces(const char *netns_prefix) {
  DIR *d = opendir("/run/netns");
  if (!d) return 0;
  int failed = 0;
  size_t plen = strlen(netns_prefix);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strncmp(e->d_name, netns_prefix, plen) != 0 || strchr(e->d_name, '/')) continue;
    char path[512];
    if (snprintf(path, sizeof path, "/run/netns/%s", e->d_name) >= (int)sizeof path) continue;
    umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW);
    if (unlink(path) < 0 && errno != ENOENT) {
      say("remove %s: %s", path, strerror(errno));
      failed = 1;
    }
  }
  closedir(d);
  /* And the worker's claims on their link addresses: /run/ol-egress/<slot> -> TAG. */
  if ((d = opendir("/run/ol-egress")) != NULL) {
    int dfd = dirfd(d);
    while ((e = readdir(d)) != NULL) {
      char target[MAX_NAME + 2];
      ssize_t n = readlinkat(dfd, e->d_name, target, sizeof target - 1);
      if (n <= 0) continue;
      target[n] = 0;
      if (strcmp(target, tag) == 0 && unlinkat(dfd, e->d_name, 0) < 0 && errno != ENOENT) {
        say("remove /run/ol-egress/%s: %s", e->d_name, strerror(errno));
        failed = 1;
      }
    }
    closedir(d);
  }
  return failed;
}

/* An absolute path without empty, `.` or `..` components. */
static int plain_path(const char *p) {
  if (p[0] != '/' || strlen(p) < 2 || strlen(p) > 4000) return 0;
  if (strstr(p, "//") || strstr(p, "/./") || strstr(p, "/../")) return 0;
  size_t n = strlen(p);
  if (p[n - 1] == '/' || (n >= 2 && strcmp(p + n - 2, "/.") == 0) ||
      (n >= 3 && strcmp(p + n - 3, "/..") == 0))
    return 0;
  return 1;
}

int main(int argc, char **argv) {
  const char *mounts_under = NULL, *netns_prefix = NULL;
  int bad = argc < 3 || strcmp(argv[1], "--tag") != 0 || strncmp(argv[2], "ol-", 3) != 0 ||
            !plain_name(argv[2]);
  for (int i = 3; !bad && i < argc; i += 2) {
    if (i + 1 >= argc) bad = 1;
    else if (strcmp(argv[i], "--mounts-under") == 0) mounts_under = argv[i + 1];
    else if (strcmp(argv[i], "--netns-prefix") == 0) netns_prefix = argv[i + 1];
    else bad = 1;
  }
  if (!bad && mounts_under && !plain_path(mounts_under)) bad = 1;
  /* Only this worker's namespaces: the prefix is the tag and more, and a plain name. */
  if (!bad && netns_prefix &&
      (strncmp(netns_prefix, argv[2], strlen(argv[2])) != 0 ||
       strlen(netns_prefix) <= strlen(argv[2]) || strchr(netns_prefix, '/')))
    bad = 1;
  if (bad) {
    fprintf(stderr,
            "usage: ol-sock-reaper --tag TAG [--mounts-under DIR] [--netns-prefix TAG-n]  "
            "(header on stdin)\n");
    return 2;
  }
  tag = argv[2];
  /* Outlive the worker: no signal meant for it or its terminal reaches us, none on its death. */
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  signal(SIGQUIT, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0);
  setsid(); /* EPERM when the worker already made us a session leader: fine */
  if (chdir("/") < 0) return 2;

  read_header();
  for (int i = 0; i < nparents; i++) {
    int fd = open_parent(parents[i], 1);
    if (fd < 0) return 2;
    close(fd);
  }
  if (write(1, "ready\n", 6) != 6) return 2;

  /* Block until the worker is gone (or closes the pipe); anything it writes is ignored. */
  char buf[256];
  for (;;) {
    ssize_t n = read(0, buf, sizeof buf);
    if (n == 0 || (n < 0 && errno != EINTR)) break;
  }
  int failed = sweep();
  if (mounts_under) failed |= unmount_under(mounts_under);
  if (netns_prefix) failed |= remove_namespaces(netns_prefix);
  return failed;
}
