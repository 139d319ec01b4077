/* The example web service of nixship's example systems, and the check that waits for it: a tiny
 * HTTP server on 0.0.0.0:80 that reports which example system runs it. It starts in about a
 * millisecond, so that a switch on a lab host costs little and a lab can hold 200 hosts.
 *
 *   example-web serve SYSTEM                    serve SYSTEM (a toplevel store path), with the
 *                                               settings of SYSTEM/etc/example-web.conf
 *   example-web wait-up PID SYSTEM TIMEOUT_MS   exit 0 once GET /version names SYSTEM, 1 when
 *                                               TIMEOUT_MS passes first, 2 once PID has exited
 *
 * Routes (GET or HEAD; anything else is 404; every response says connection: close):
 *   /         200 text: "example web system NAME"
 *   /version  200 JSON: {"name":NAME,"version":VERSION,"system":SYSTEM}
 *   /health   200 "ok", or 500 "unhealthy" when the configuration says health=fail
 *   /secret   200 JSON: {"sha256":HEX} of /run/keys/web-token as read at start, or null
 *   /work     the service's work: 200 "done"; once errorsAfter seconds have passed since it
 *             started, errors percent of these requests answer 500 "failed" (every n-th, evenly),
 *             while /health stays as the configuration says
 *   /metrics  200, Prometheus' text format: example_web_requests_total{route,code}, the requests
 *             answered since the service started (not those of /metrics), by route and status
 * The path is compared without its query; dot segments are not resolved.
 * One connection at a time: each has 2 s to send its request head (at most 8 KiB) and to take
 * the answer. SIGHUP is ignored; SIGTERM and SIGINT stop it with exit 0. It logs to stdout. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HEAD_MAX 8192
#define BODY_MAX 10240
#define VALUE_MAX 255
#define SYSTEM_MAX 1024
#define CONNECTION_MS 2000
#define LINGER_MS 500
#define TOKEN_PATH "/run/keys/web-token"

extern char **environ;

static volatile sig_atomic_t stop_signal;
/* The signal mask while waiting (ppoll): SIGTERM and SIGINT are blocked everywhere else, so a
 * stop that arrives between two calls is never lost. */
static sigset_t wait_mask;

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void log_line(const char *format, ...) {
  struct timespec ts;
  struct tm tm;
  char stamp[32];
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  printf("%s.%03ldZ example-web: ", stamp, ts.tv_nsec / 1000000);
  va_list args;
  va_start(args, format);
  vprintf(format, args);
  va_end(args);
  putchar('\n');
  fflush(stdout);
}

static void pause_ms(long ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

/* Waits until FD is ready for EVENTS: 1 ready, 0 DEADLINE (now_ms; -1: none) passed, -1 a stop
 * signal came or poll failed. */
static int wait_fd(int fd, short events, long long deadline) {
  for (;;) {
    if (stop_signal) return -1;
    struct timespec ts, *timeout = NULL;
    if (deadline >= 0) {
      long long left = deadline - now_ms();
      if (left <= 0) return 0;
      ts.tv_sec = left / 1000;
      ts.tv_nsec = (left % 1000) * 1000000;
      timeout = &ts;
    }
    struct pollfd p = {.fd = fd, .events = events};
    int r = ppoll(&p, 1, timeout, &wait_mask);
    if (r > 0) return 1;
    if (r < 0 && errno != EINTR) return -1;
  }
}

/* Writes S as a JSON string (JSON.stringify's escapes) into DST; its length, or -1 when it does
 * not fit in CAP bytes with its terminating NUL. */
static int json_string(char *dst, size_t cap, const char *s) {
  size_t n = 0;
  const char *shorts = "\b\f\n\r\t", *letters = "bfnrt";
  char buf[8];
  if (cap < 1) return -1;
  dst[n++] = '"';
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    const char *hit = c ? strchr(shorts, c) : NULL;
    if (c == '"' || c == '\\') snprintf(buf, sizeof buf, "\\%c", c);
    else if (hit) snprintf(buf, sizeof buf, "\\%c", letters[hit - shorts]);
    else if (c < 0x20) snprintf(buf, sizeof buf, "\\u%04x", c);
    else snprintf(buf, sizeof buf, "%c", c);
    size_t len = strlen(buf);
    if (n + len + 2 > cap) return -1;
    memcpy(dst + n, buf, len);
    n += len;
  }
  if (n + 2 > cap) return -1;
  dst[n++] = '"';
  dst[n] = '\0';
  return (int)n;
}

/* --- serve ----------------------------------------------------------------------------------- */

static char name[VALUE_MAX + 1], version[VALUE_MAX + 1], health[VALUE_MAX + 1], start[VALUE_MAX + 1];
static char errors_text[VALUE_MAX + 1] = "0", errors_after_text[VALUE_MAX + 1] = "0";
static char root_body[BODY_MAX], version_body[BODY_MAX], secret_body[128];
/* /work's errors: the percent of requests that fail once errors_after seconds have passed. */
static long errors_percent, errors_after;
static long long started_ms;

/* The routes and status codes the request counter knows, and its counts. */
static const char *routes[] = {"/", "/version", "/health", "/secret", "/work", "other"};
#define ROUTE_COUNT (sizeof routes / sizeof routes[0])
#define ROUTE_WORK 4
static const int codes[] = {200, 400, 404, 431, 500};
#define CODE_COUNT (sizeof codes / sizeof codes[0])
static unsigned long long requests[ROUTE_COUNT][CODE_COUNT];
/* /work requests since the errors began: which of them fail is decided by this count. */
static unsigned long long work_since_errors;

/* Reads SYSTEM/etc/example-web.conf: key=value lines (name, version, health, start). */
static int read_config(const char *system) {
  char path[SYSTEM_MAX + 64], line[VALUE_MAX + 16];
  snprintf(path, sizeof path, "%s/etc/example-web.conf", system);
  FILE *f = fopen(path, "re");
  if (!f) {
    log_line("cannot read the configuration of %s: %s", system, strerror(errno));
    return -1;
  }
  struct { const char *key; char *value; } fields[] = {
      {"name", name}, {"version", version}, {"health", health}, {"start", start},
      {"errors", errors_text}, {"errorsAfter", errors_after_text}};
  int ok = 0;
  while (fgets(line, sizeof line, f)) {
    size_t len = strlen(line);
    if (len == 0 || line[len - 1] != '\n') {
      log_line("cannot read the configuration of %s: a line is too long or unterminated", system);
      fclose(f);
      return -1;
    }
    line[len - 1] = '\0';
    char *eq = strchr(line, '=');
    if (!eq) continue;
    *eq = '\0';
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
      if (strcmp(line, fields[i].key) == 0) {
        snprintf(fields[i].value, VALUE_MAX + 1, "%s", eq + 1);
        ok |= 1 << i;
      }
    }
  }
  fclose(f);
  if ((ok & 15) != 15) {
    log_line("cannot read the configuration of %s: it lacks name, version, health or start", system);
    return -1;
  }
  /* errors and errorsAfter are optional (0): whole numbers, errors at most 100. */
  char *end;
  errors_percent = strtol(errors_text, &end, 10);
  if (*end || errors_percent < 0 || errors_percent > 100) {
    log_line("the configuration of %s says errors=%s; it takes 0 to 100", system, errors_text);
    return -1;
  }
  errors_after = strtol(errors_after_text, &end, 10);
  if (*end || errors_after < 0) {
    log_line("the configuration of %s says errorsAfter=%s; it takes seconds", system, errors_after_text);
    return -1;
  }
  return 0;
}

/* Counts one answer of ROUTE (an index of routes) with STATUS. */
static void count_request(size_t route, int status) {
  for (size_t i = 0; i < CODE_COUNT; i++) {
    if (codes[i] == status) requests[route][i]++;
  }
}

/* Whether this /work request fails: none before errors_after, then every n-th of errors_percent. */
static int work_fails(void) {
  if (errors_percent == 0 || now_ms() - started_ms < errors_after * 1000) return 0;
  work_since_errors++;
  unsigned long long n = work_since_errors, p = (unsigned long long)errors_percent;
  return n * p / 100 > (n - 1) * p / 100;
}

/* The counter in Prometheus' text format: /work's 200 and 500 always, the rest once counted. */
static void metrics_body(char *body, size_t cap) {
  size_t n = (size_t)snprintf(body, cap,
      "# HELP example_web_requests_total Requests answered since the service started, by route and status.\n"
      "# TYPE example_web_requests_total counter\n");
  for (size_t r = 0; r < ROUTE_COUNT && n < cap; r++) {
    for (size_t c = 0; c < CODE_COUNT && n < cap; c++) {
      int always = r == ROUTE_WORK && (codes[c] == 200 || codes[c] == 500);
      if (!always && requests[r][c] == 0) continue;
      n += (size_t)snprintf(body + n, cap - n, "example_web_requests_total{route=\"%s\",code=\"%d\"} %llu\n",
                            routes[r], codes[c], requests[r][c]);
    }
  }
}

/* The SHA-256 (hex) of the token, read once as a service reads its credentials at start: by
 * sha256sum on the opened file. 0 with DIGEST set, -1 when there is none or it cannot be read. */
static int token_digest(char digest[65]) {
  int fd = open(TOKEN_PATH, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno != ENOENT) log_line("cannot read %s: %s", TOKEN_PATH, strerror(errno));
    return -1;
  }
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) {
    log_line("cannot read %s: pipe: %s", TOKEN_PATH, strerror(errno));
    close(fd);
    return -1;
  }
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  sigset_t none;
  sigemptyset(&none);
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fd, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawnattr_init(&attr);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  char *argv[] = {"sha256sum", NULL};
  pid_t pid;
  int err = posix_spawnp(&pid, "sha256sum", &actions, &attr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  close(fd);
  close(out[1]);
  if (err != 0) {
    log_line("cannot read %s: sha256sum: %s", TOKEN_PATH, strerror(err));
    close(out[0]);
    return -1;
  }
  char text[128];
  size_t len = 0;
  int ended = 0;
  long long deadline = now_ms() + 5000;
  while (len < sizeof text - 1 && wait_fd(out[0], POLLIN, deadline) == 1) {
    ssize_t n = read(out[0], text + len, sizeof text - 1 - len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ended = 1;
      break;
    }
    len += (size_t)n;
  }
  close(out[0]);
  text[len] = '\0';
  if (!ended) kill(pid, SIGKILL); /* it outlived the deadline, or wrote more than a digest */
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || len < 64 || strspn(text, "0123456789abcdef") < 64) {
    log_line("cannot read %s: sha256sum failed", TOKEN_PATH);
    return -1;
  }
  memcpy(digest, text, 64);
  digest[64] = '\0';
  return 0;
}

static void on_stop(int signal) { stop_signal = signal; }

/* Sends all LEN bytes of DATA before DEADLINE; -1 when it cannot. */
static int send_all(int fd, const char *data, size_t len, long long deadline) {
  while (len > 0) {
    ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
    if (n > 0) {
      data += n;
      len -= (size_t)n;
    } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
      return -1;
    } else if (wait_fd(fd, POLLOUT, deadline) != 1) {
      return -1;
    }
  }
  return 0;
}

static void respond(int fd, const char *method, int status, const char *type, const char *body,
                    long long deadline) {
  const char *reason = status == 200 ? "OK" : status == 404 ? "Not Found"
                     : status == 500 ? "Internal Server Error" : status == 431
                     ? "Request Header Fields Too Large" : "Bad Request";
  char date[64], head[512];
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  size_t len = strlen(body);
  int n = snprintf(head, sizeof head,
                   "HTTP/1.1 %d %s\r\ncontent-type: %s; charset=utf-8\r\nconnection: close\r\n"
                   "content-length: %zu\r\ndate: %s\r\n\r\n",
                   status, reason, type, len, date);
  if (n < 0 || (size_t)n >= sizeof head) return;
  if (send_all(fd, head, (size_t)n, deadline) != 0) return;
  if (strcmp(method, "HEAD") != 0) send_all(fd, body, len, deadline);
}

/* Answers one connection: reads the request head (up to the blank line), answers, and closes
 * gracefully (a close with unread input would reset the connection under the answer). */
static void serve_connection(int fd) {
  char req[HEAD_MAX + 1];
  size_t len = 0;
  long long deadline = now_ms() + CONNECTION_MS;
  for (;;) {
    req[len] = '\0';
    if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n")) break;
    if (len == HEAD_MAX) {
      respond(fd, "GET", 431, "text/plain", "request head too large\n", deadline);
      goto done;
    }
    if (wait_fd(fd, POLLIN, deadline) != 1) goto done;
    ssize_t n = read(fd, req + len, HEAD_MAX - len);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) goto done;
    if (n > 0) {
      if (memchr(req + len, '\0', (size_t)n)) {
        respond(fd, "GET", 400, "text/plain", "bad request\n", deadline);
        goto done;
      }
      len += (size_t)n;
    }
  }
  /* The request line: METHOD SP TARGET SP HTTP/1.x */
  char *end = strchr(req, '\n');
  if (end > req && end[-1] == '\r') end--;
  *end = '\0';
  char *method = req, *target = strchr(req, ' '), *proto = NULL;
  if (target) {
    *target++ = '\0';
    proto = strchr(target, ' ');
  }
  if (proto) *proto++ = '\0';
  if (!proto || !*method || !*target || strncmp(proto, "HTTP/1.", 7) != 0 || strchr(proto, ' ')) {
    respond(fd, "GET", 400, "text/plain", "bad request\n", deadline);
    goto done;
  }
  const char *path = target;
  if (strncmp(path, "http://", 7) == 0 || strncmp(path, "https://", 8) == 0) {
    path = strchr(strstr(path, "//") + 2, '/');
    if (!path) path = "/";
  }
  size_t path_len = strcspn(path, "?#");
  int get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
#define IS(route) (get && path_len == strlen(route) && strncmp(path, route, path_len) == 0)
  if (IS("/metrics")) {
    static char metrics[BODY_MAX];
    metrics_body(metrics, sizeof metrics);
    respond(fd, method, 200, "text/plain", metrics, deadline);
    goto done;
  }
  size_t route = ROUTE_COUNT - 1;
  for (size_t r = 0; r < ROUTE_COUNT - 1; r++) {
    if (IS(routes[r])) route = r;
  }
  int status = 404;
  if (IS("/secret")) respond(fd, method, status = 200, "application/json", secret_body, deadline);
  else if (IS("/")) respond(fd, method, status = 200, "text/plain", root_body, deadline);
  else if (IS("/version")) respond(fd, method, status = 200, "application/json", version_body, deadline);
  else if (IS("/health") && strcmp(health, "ok") == 0) respond(fd, method, status = 200, "text/plain", "ok\n", deadline);
  else if (IS("/health")) respond(fd, method, status = 500, "text/plain", "unhealthy\n", deadline);
  else if (IS("/work") && work_fails()) respond(fd, method, status = 500, "text/plain", "failed\n", deadline);
  else if (IS("/work")) respond(fd, method, status = 200, "text/plain", "done\n", deadline);
  else respond(fd, method, 404, "text/plain", "not found\n", deadline);
  count_request(route, status);
#undef IS
done:
  shutdown(fd, SHUT_WR);
  long long linger = now_ms() + LINGER_MS;
  for (int i = 0; i < 16 && wait_fd(fd, POLLIN, linger) == 1; i++) {
    if (read(fd, req, HEAD_MAX) <= 0) break;
  }
  close(fd);
}

static int serve(const char *system) {
  /* Detached from the session that started it: a hangup is not a reason to stop. */
  signal(SIGHUP, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  struct sigaction stop = {.sa_handler = on_stop};
  sigemptyset(&stop.sa_mask);
  sigaction(SIGTERM, &stop, NULL);
  sigaction(SIGINT, &stop, NULL);
  sigset_t blocked;
  sigemptyset(&blocked);
  sigaddset(&blocked, SIGTERM);
  sigaddset(&blocked, SIGINT);
  sigprocmask(SIG_BLOCK, &blocked, &wait_mask);
  sigdelset(&wait_mask, SIGTERM);
  sigdelset(&wait_mask, SIGINT);

  if (strlen(system) > SYSTEM_MAX) {
    log_line("the system's path is longer than %d bytes", SYSTEM_MAX);
    return 1;
  }
  if (read_config(system) != 0) return 1;
  if (strcmp(start, "ok") != 0) {
    /* web-failing: the stand-in for a unit that fails as it starts. */
    log_line("%s (%s) failed to start: its configuration says start=%s", name, system, start);
    return 1;
  }
  char digest[65], jname[BODY_MAX / 4], jversion[BODY_MAX / 4], jsystem[BODY_MAX / 4];
  if (token_digest(digest) == 0) snprintf(secret_body, sizeof secret_body, "{\"sha256\":\"%s\"}\n", digest);
  else snprintf(secret_body, sizeof secret_body, "{\"sha256\":null}\n");
  if (json_string(jname, sizeof jname, name) < 0 || json_string(jversion, sizeof jversion, version) < 0 ||
      json_string(jsystem, sizeof jsystem, system) < 0) {
    log_line("the configuration of %s does not fit in an answer", system);
    return 1;
  }
  snprintf(root_body, sizeof root_body, "example web system %s\n", name);
  snprintf(version_body, sizeof version_body, "{\"name\":%s,\"version\":%s,\"system\":%s}\n", jname,
           jversion, jsystem);

  int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(80), .sin_addr.s_addr = htonl(INADDR_ANY)};
  if (listener < 0 || setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(listener, 64) != 0) {
    log_line("%s cannot serve: listen 0.0.0.0:80: %s", name, strerror(errno));
    return 1;
  }
  started_ms = now_ms();
  log_line("%s (%s) listening on 0.0.0.0:80", name, system);
  for (;;) {
    int ready = wait_fd(listener, POLLIN, -1);
    if (stop_signal) break;
    if (ready != 1) {
      log_line("%s cannot serve: poll: %s", name, strerror(errno));
      return 1;
    }
    int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) serve_connection(fd);
    else if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) pause_ms(10);
  }
  log_line("%s stopping on %s", name, stop_signal == SIGINT ? "SIGINT" : "SIGTERM");
  return 0;
}

/* --- wait-up --------------------------------------------------------------------------------- */

/* Whether PID still runs: a zombie has exited too (nobody may reap an orphan quickly). */
static int alive(const char *pid) {
  char path[64], stat[512];
  snprintf(path, sizeof path, "/proc/%s/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, stat, sizeof stat - 1);
  close(fd);
  if (n <= 0) return 0;
  stat[n] = '\0';
  char *paren = strrchr(stat, ')');
  return paren && paren[1] == ' ' && paren[2] != 'Z' && paren[2] != 'X' && paren[2] != '\0';
}

/* Whether GET /version on 127.0.0.1:80 answers, within 1 s, a body that holds EXPECTED. */
static int serves(const char *expected) {
  long long deadline = now_ms() + 1000;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(80), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int found = 0, err = 0;
  socklen_t err_len = sizeof err;
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0 &&
      (errno != EINPROGRESS || wait_fd(fd, POLLOUT, deadline) != 1 ||
       getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &err_len) != 0 || err != 0))
    goto done;
  const char *request = "GET /version HTTP/1.0\r\nhost: 127.0.0.1\r\n\r\n";
  if (send_all(fd, request, strlen(request), deadline) != 0) goto done;
  char answer[BODY_MAX + 1024];
  size_t len = 0;
  while (len < sizeof answer - 1 && wait_fd(fd, POLLIN, deadline) == 1) {
    ssize_t n = read(fd, answer + len, sizeof answer - 1 - len);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) break;
    if (n > 0) len += (size_t)n;
  }
  answer[len] = '\0';
  const char *body = strstr(answer, "\r\n\r\n");
  found = body && strlen(body) == len - (size_t)(body - answer) && strstr(body, expected) != NULL;
done:
  close(fd);
  return found;
}

static int digits(const char *s) { return *s && strlen(s) <= 10 && strspn(s, "0123456789") == strlen(s); }

static int wait_up(const char *pid, const char *system, const char *timeout_text) {
  if (!digits(pid) || !digits(timeout_text) || strlen(system) > SYSTEM_MAX) {
    fprintf(stderr, "usage: example-web wait-up PID SYSTEM TIMEOUT_MS\n");
    return 2;
  }
  sigprocmask(SIG_BLOCK, NULL, &wait_mask);
  /* The body names SYSTEM as the last member: "system":"/nix/store/...". A quote inside a value
   * is escaped, so this can only match the member itself. */
  char expected[BODY_MAX / 4 + 16];
  int n = json_string(expected + 9, sizeof expected - 10, system);
  if (n < 0) return 2;
  memcpy(expected, "\"system\":", 9);
  strcpy(expected + 9 + n, "}");
  long long deadline = now_ms() + atoll(timeout_text);
  for (;;) {
    if (!alive(pid)) {
      fprintf(stderr, "example-web (pid %s) exited while starting\n", pid);
      return 2;
    }
    if (serves(expected)) return 0;
    if (now_ms() >= deadline) {
      fprintf(stderr, "example-web (pid %s) did not answer on port 80 within %s ms\n", pid, timeout_text);
      return 1;
    }
    pause_ms(20);
  }
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc == 3 && strcmp(argv[1], "serve") == 0) return serve(argv[2]);
  if (argc == 5 && strcmp(argv[1], "wait-up") == 0) return wait_up(argv[2], argv[3], argv[4]);
  log_line("usage: example-web serve SYSTEM | example-web wait-up PID SYSTEM TIMEOUT_MS");
  return 2;
}
