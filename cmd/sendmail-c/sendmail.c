/*
 * sendmail is Outbox's /usr/sbin/sendmail: a small C program that parses
 * nothing. It sends its arguments, three environment variables (NAME,
 * LOGNAME, USER) and its standard input to the running daemon over the
 * sendmail socket; the daemon runs the shim's own Go code for the caller
 * (whom it knows from the socket's peer credentials) and stores the message
 * as its submission socket would, then answers with the exit status and the
 * text for standard error. The protocol is described in
 * sendmailshim/serve.go. Every other call (mailq, newaliases, -bs, -bv, -q,
 * -v, a configuration named with -C or OUTBOX_CONFIG, the daemon down or
 * going away before it has the whole message) goes to outbox-sendmail, the
 * whole shim, installed beside this program: it takes this process's place
 * before any input is read, or gets the input read so far followed by the
 * rest.
 *
 * Why C: a Go program starts in about 5 ms on a paravirtualised 2-core VM
 * (its runtime's first pages and CPU probes trap) and takes about 1 ms more
 * to exit; this program's whole call, daemon's commit included, takes less
 * than dma's. See the README's Benchmarks for the figures.
 *
 * It exits 0 only once the daemon has answered that the message is stored.
 * It has no privileges: it is neither setuid nor setgid.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SENDMAIL_SOCKET
#define SENDMAIL_SOCKET "/run/outbox/sendmail.sock"
#endif
#ifndef FULL_SHIM
#define FULL_SHIM "/usr/sbin/outbox-sendmail"
#endif
#define FULL_NAME "outbox-sendmail"

/* Each read or write on the socket may wait this long: the daemon answers
 * only after its durable commit, which a loaded disk may make slow. Its
 * first answer, which needs no disk, may wait ANSWER_SEC: a socket nobody
 * serves (systemd holding one for a daemon that does not take it) sends
 * the call to the whole shim after that. */
#define TIMEOUT_SEC 600
#ifndef ANSWER_SEC
#define ANSWER_SEC 60
#endif

#define EX_TEMPFAIL 75

static char **args;
static char *fallback_args[] = {"sendmail", NULL};
static const char *prog = "sendmail";

/* The input read so far: a call handed over after the connection was lost
 * gives it to the whole shim first. */
static char *in;
static size_t in_len, in_cap;
/* in_done: no more input is to be read (end of input, or the "." line). */
static int in_done;

/* The daemon's answers, read through this buffer; r_errno is the error of
 * the read that failed, 0 at the end of the stream. */
static char rbuf[8192];
static size_t r_pos, r_len;
static int r_errno;

static int dot_end(size_t *line, int at_eof);
static void append(const char *p, size_t n);

static void die(int code, const char *fmt, const char *arg)
{
	fprintf(stderr, "%s: ", prog);
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	exit(code);
}

/* full_shim returns the path of outbox-sendmail in this program's folder. */
static const char *full_shim(void)
{
	static char path[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", path, sizeof path - sizeof FULL_NAME - 1);
	if (n <= 0)
		return FULL_SHIM;
	path[n] = 0;
	char *slash = strrchr(path, '/');
	if (!slash)
		return FULL_SHIM;
	strcpy(slash + 1, FULL_NAME);
	return path;
}

/* hand_over lets the whole shim take this process's place, with the same
 * arguments and environment; no input has been read. */
static void hand_over(void)
{
	const char *path = full_shim();
	execv(path, args);
	die(EX_TEMPFAIL, "cannot run the whole shim: %s; nothing was sent", strerror(errno));
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t k = write(fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* send_all writes to the socket; MSG_NOSIGNAL: a daemon gone away is an
 * error to handle, not a signal. */
static int send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		p += (size_t)k;
		n -= (size_t)k;
	}
	return 0;
}

/* hand_over_input runs the whole shim with the input read so far followed
 * by the rest of standard input (none after the end was seen), and exits
 * with its status: the daemon went away before it had the whole message,
 * so it stored nothing. dot: a line "." ends the input (no -i). */
static void hand_over_input(int dot)
{
	const char *path = full_shim();
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		die(EX_TEMPFAIL, "cannot hand the message over: %s; nothing was sent", strerror(errno));
	/* A caller that ignores SIGCHLD would leave no status to wait for. */
	signal(SIGCHLD, SIG_DFL);
	pid_t pid = fork();
	if (pid < 0)
		die(EX_TEMPFAIL, "cannot hand the message over: %s; nothing was sent", strerror(errno));
	if (pid == 0) {
		if (dup2(p[0], 0) < 0)
			_exit(EX_TEMPFAIL);
		execv(path, args);
		_exit(EX_TEMPFAIL);
	}
	close(p[0]);
	signal(SIGPIPE, SIG_IGN);
	/* A whole shim that stops reading (a "." line) closes the pipe when it
	 * exits; the rest of the input is then not waited for. */
	int open_ = write_all(p[1], in, in_len) == 0;
	size_t line = 0;
	if (dot && dot_end(&line, 0))
		in_done = 1;
	char buf[65536];
	while (open_ && !in_done) {
		struct pollfd fds[2] = {{.fd = 0, .events = POLLIN}, {.fd = p[1], .events = 0}};
		if (poll(fds, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (fds[1].revents & (POLLERR | POLLHUP))
			break;
		if (!(fds[0].revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		ssize_t n = read(0, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			/* The whole shim must not take what it has for the whole
			 * message: it is stopped before it sees an end. */
			int e = errno;
			kill(pid, SIGKILL);
			while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
				;
			die(EX_TEMPFAIL, "cannot read the message: %s; nothing was sent", strerror(e));
		}
		if (n == 0)
			break;
		append(buf, (size_t)n);
		if (write_all(p[1], buf, (size_t)n) < 0)
			break;
		if (dot && dot_end(&line, 0))
			break;
	}
	close(p[1]);
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			die(EX_TEMPFAIL, "cannot wait for the whole shim: %s", strerror(errno));
	if (WIFEXITED(status))
		exit(WEXITSTATUS(status));
	die(EX_TEMPFAIL, "the whole shim was killed by signal %s", strsignal(WTERMSIG(status)));
}

/* read_byte returns the next byte the daemon sent, or -1. */
static int read_byte(int fd)
{
	if (r_pos == r_len) {
		ssize_t n;
		do
			n = read(fd, rbuf, sizeof rbuf);
		while (n < 0 && errno == EINTR);
		if (n <= 0) {
			r_errno = n < 0 ? errno : 0;
			return -1;
		}
		r_pos = 0;
		r_len = (size_t)n;
	}
	return (unsigned char)rbuf[r_pos++];
}

enum answer { A_LOST, A_GO, A_GO_DOT, A_HANDOVER, A_EXIT };

/* An EXIT answer: the call's status and what to print on standard error. */
static int exit_code;
static char *exit_text;
static size_t exit_len;

/* read_number reads decimal digits up to the byte stop. */
static int read_number(int fd, int stop, size_t max, size_t *v)
{
	size_t n = 0;
	int digits = 0, c;
	while ((c = read_byte(fd)) >= '0' && c <= '9') {
		n = n * 10 + (size_t)(c - '0');
		if (n > max || ++digits > 10)
			return -1;
	}
	if (c != stop || digits == 0)
		return -1;
	*v = n;
	return 0;
}

/* read_answer reads one answer line of the daemon. */
static enum answer read_answer(int fd)
{
	char word[16];
	size_t n = 0;
	int c;
	while ((c = read_byte(fd)) >= 0 && c != '\n' && c != ' ') {
		if (n == sizeof word - 1)
			return A_LOST;
		word[n++] = (char)c;
	}
	if (c < 0)
		return A_LOST;
	word[n] = 0;
	if (strcmp(word, "GO") == 0) {
		if (c == '\n')
			return A_GO;
		const char *rest = "DOT\n";
		for (; *rest; rest++)
			if (read_byte(fd) != *rest)
				return A_LOST;
		return A_GO_DOT;
	}
	if (strcmp(word, "HANDOVER") == 0 && c == '\n')
		return A_HANDOVER;
	if (strcmp(word, "EXIT") != 0 || c != ' ')
		return A_LOST;
	size_t code, len;
	if (read_number(fd, ' ', 255, &code) < 0 || read_number(fd, ':', 1 << 20, &len) < 0)
		return A_LOST;
	exit_text = malloc(len + 1);
	if (!exit_text)
		return A_LOST;
	for (size_t i = 0; i < len; i++) {
		if ((c = read_byte(fd)) < 0)
			return A_LOST;
		exit_text[i] = (char)c;
	}
	if (read_byte(fd) != '\n')
		return A_LOST;
	exit_code = (int)code;
	exit_len = len;
	return A_EXIT;
}

static void obey_exit(void)
{
	write_all(2, exit_text, exit_len);
	exit(exit_code);
}

/* append adds what was read to the input kept. */
static void append(const char *p, size_t n)
{
	if (in_len + n > in_cap) {
		size_t cap = in_cap ? in_cap : 65536;
		while (cap < in_len + n)
			cap *= 2;
		char *grown = realloc(in, cap);
		if (!grown)
			die(EX_TEMPFAIL, "%s; nothing was sent", "out of memory");
		in = grown;
		in_cap = cap;
	}
	memcpy(in + in_len, p, n);
	in_len += n;
}

/* dot_end reports whether the input kept holds a line that is exactly "."
 * (ended by "\n" or "\r\n", or by the end of input when at_eof), the end
 * of a message without -i. *line is where the first line not yet judged
 * starts. */
static int dot_end(size_t *line, int at_eof)
{
	for (;;) {
		size_t s = *line;
		if (s >= in_len)
			return 0;
		if (in[s] == '.') {
			if (s + 1 == in_len)
				return at_eof;
			if (in[s + 1] == '\n')
				return 1;
			if (in[s + 1] == '\r') {
				if (s + 2 == in_len)
					return at_eof;
				if (in[s + 2] == '\n')
					return 1;
			}
		}
		char *nl = memchr(in + s, '\n', in_len - s);
		if (!nl)
			return 0;
		*line = (size_t)(nl - in) + 1;
	}
}

/* lost handles a connection lost before the end of the input went out:
 * an answer the daemon sent before it closed decides; without one it
 * stored nothing, and the whole shim takes the message. */
static void lost(int fd, int dot)
{
	if (read_answer(fd) == A_EXIT)
		obey_exit();
	close(fd);
	hand_over_input(dot);
}

int main(int argc, char **argv)
{
	/* A caller that closed standard input, output or error must not have
	 * the socket take its place. */
	for (int fd = 0; fd <= 2; fd++)
		if (fcntl(fd, F_GETFD) < 0 && errno == EBADF && open("/dev/null", O_RDWR) != fd)
			return EX_TEMPFAIL;
	args = argc > 0 ? argv : fallback_args;
	const char *base = strrchr(args[0], '/');
	base = base ? base + 1 : args[0];
	if (strcmp(base, "sendmail") != 0)
		hand_over(); /* mailq, newaliases */
	prog = base;

	const char *sock = getenv("OUTBOX_SENDMAIL_SOCKET");
	if (!sock || !*sock) {
		/* A call that names its own relay.hcl may mean another
		 * daemon's socket: the whole shim reads it. */
		if (getenv("OUTBOX_CONFIG"))
			hand_over();
		for (int i = 1; i < argc; i++)
			if (strncmp(argv[i], "-C", 2) == 0)
				hand_over();
		sock = SENDMAIL_SOCKET;
	}
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(sock) >= sizeof sa.sun_path)
		hand_over();
	strcpy(sa.sun_path, sock);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		hand_over();
	struct timeval tv = {.tv_sec = TIMEOUT_SEC};
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	tv.tv_sec = ANSWER_SEC;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	int rc;
	do
		rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
	while (rc < 0 && errno == EINTR);
	if (rc < 0)
		hand_over(); /* the daemon is not running: the maildrop folder */

	/* The request: arguments, the environment the shim reads, ".". */
	static const char *const env_names[] = {"NAME", "LOGNAME", "USER"};
	size_t hlen = 64;
	for (int i = 0; i < argc; i++)
		hlen += strlen(args[i]) + 24;
	for (size_t i = 0; i < sizeof env_names / sizeof *env_names; i++) {
		const char *v = getenv(env_names[i]);
		if (v)
			hlen += strlen(env_names[i]) + strlen(v) + 25;
	}
	char *h = malloc(hlen);
	if (!h)
		hand_over();
	size_t o = (size_t)sprintf(h, "OUTBOX-SENDMAIL 1\n");
	for (int i = 0; i < (argc > 0 ? argc : 1); i++) {
		size_t n = strlen(args[i]);
		o += (size_t)sprintf(h + o, "A%zu:", n);
		memcpy(h + o, args[i], n);
		o += n;
		h[o++] = '\n';
	}
	for (size_t i = 0; i < sizeof env_names / sizeof *env_names; i++) {
		const char *v = getenv(env_names[i]);
		if (v)
			o += (size_t)sprintf(h + o, "E%zu:%s=%s\n", strlen(env_names[i]) + 1 + strlen(v), env_names[i], v);
	}
	o += (size_t)sprintf(h + o, ".\n");
	if (send_all(fd, h, o) < 0)
		hand_over();
	free(h);

	enum answer a = read_answer(fd);
	switch (a) {
	case A_EXIT:
		obey_exit();
		break;
	case A_GO:
	case A_GO_DOT:
		tv.tv_sec = TIMEOUT_SEC;
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
		break;
	default: /* HANDOVER, or the daemon went away before answering */
		close(fd);
		hand_over();
	}

	/* The input, in chunks, each sent as it is read. */
	size_t line = 0;
	char buf[65536];
	while (!in_done) {
		struct pollfd fds[2] = {{.fd = 0, .events = POLLIN}, {.fd = fd, .events = POLLIN}};
		if (poll(fds, 2, TIMEOUT_SEC * 1000) < 0) {
			if (errno == EINTR)
				continue;
			die(EX_TEMPFAIL, "poll: %s", strerror(errno));
		}
		if (fds[1].revents) /* an answer before the end: a refusal */
			lost(fd, a == A_GO_DOT);
		if (!fds[0].revents)
			continue;
		ssize_t n = read(0, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			/* Closing without the end marker: the daemon stores
			 * nothing. */
			die(EX_TEMPFAIL, "cannot read the message: %s; nothing was sent", strerror(errno));
		if (n == 0) {
			in_done = 1;
			break;
		}
		append(buf, (size_t)n);
		char head[24];
		int hn = sprintf(head, "%zd\n", n);
		if (send_all(fd, head, (size_t)hn) < 0 || send_all(fd, buf, (size_t)n) < 0)
			lost(fd, a == A_GO_DOT);
		if (a == A_GO_DOT && dot_end(&line, 0))
			in_done = 1;
	}
	if (send_all(fd, "0\n", 2) < 0)
		lost(fd, a == A_GO_DOT);
	if (read_answer(fd) == A_EXIT)
		obey_exit();
	/* ECONNRESET: the daemon closed with input it had not read, the end
	 * mark at least, which comes last: without it nothing is stored. */
	if (r_errno == ECONNRESET) {
		close(fd);
		hand_over_input(a == A_GO_DOT);
	}
	die(EX_TEMPFAIL, "%s", "lost the connection to the daemon after sending the message; it may have been stored");
	return EX_TEMPFAIL;
}
