/* The media plane's per-packet fan-out in C: for one incoming packet, every slot's header
 * rewrite, SRTP protect and send, in one call from Python.
 *
 * Why C: at N subscribers the node pays N rewrites, N protects and N sends per incoming packet.
 * The protect (libsrtp) and the send (the kernel) were already native; what the Python loop
 * added around them (the loop itself, struct.pack, a bytes concatenation, the cffi call and its
 * buffer copies, the socket method call, per-packet objects) was about a third of the node's
 * CPU per forwarded packet beside the kernel's share. Here the loop writes the header straight
 * into one stack buffer, protects it in place and sends it, with no Python object per packet.
 *
 * What stays in Python (forwarder.py): everything that is not the common case. A slot is handed
 * back to Python (the "slow" list) when it is not bound to a plain UDP socket (TURN relay, not
 * connected yet), when it rewrites the VP8 payload (picture id / TL0PICIDX), or when the packet
 * is above its temporal cap. Late packets never come here.
 *
 * ``Egress`` is the base class of forwarder.Slot: the fields the loop reads (offsets, SSRC,
 * payload type, temporal cap, rewrite flag) are its C members, which Python reads and writes as
 * ordinary attributes, so the slot keeps one copy of each. The SRTP context and the protect
 * function come from pylibsrtp, through confsvc.media.hooks.srtp_pointers (the same libsrtp the
 * session was made with); the Egress holds a reference to the pylibsrtp Session so that the
 * context outlives it. The socket is a dup() of the transport's: if aiortc closes its socket,
 * ours still refers to the same (now unread) socket and never to a reused descriptor number;
 * it is closed by unbind, rebind and deallocation.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef int (*protect_fn)(void *ctx, void *rtp, int *len);

#define MAX_PREFIX 64     /* the slot's own header-extension bytes (0xBEDE header + MID) */
#define MAX_PACKET 1500   /* plaintext RTP, header included */
#define TRAILER_ROOM 256  /* >= libsrtp's SRTP_MAX_TRAILER_LEN (checked by hooks.problems) */

typedef struct {
    PyObject_HEAD
    long long seq_off;
    long long ts_off;
    long long packets;
    long long octets;
    unsigned int ssrc;
    int pt;
    int max_tid;
    char rewrite;
    int fd;                        /* our dup of the subscriber socket; -1: not bound */
    struct sockaddr_storage addr;  /* destination when the socket is not connected */
    socklen_t addrlen;             /* 0: connected socket, send() */
    void *srtp;
    protect_fn protect;
    PyObject *keep;                /* the pylibsrtp Session that owns srtp */
    unsigned char prefix[MAX_PREFIX];
    Py_ssize_t prefix_len;
} Egress;

static void egress_release(Egress *self) {
    if (self->fd >= 0) {
        close(self->fd);
        self->fd = -1;
    }
    self->srtp = NULL;
    self->protect = NULL;
    self->addrlen = 0;
    Py_CLEAR(self->keep);
}

static PyObject *Egress_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    Egress *self = (Egress *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->fd = -1;
        self->max_tid = 255;
    }
    return (PyObject *)self;
}

static int Egress_init(PyObject *self, PyObject *args, PyObject *kwds) {
    return 0; /* the subclass's __init__ takes its own arguments */
}

static void Egress_dealloc(Egress *self) {
    egress_release(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int parse_addr(PyObject *addr, struct sockaddr_storage *out, socklen_t *len) {
    const char *host;
    int port;
    unsigned int flowinfo = 0, scope_id = 0;
    memset(out, 0, sizeof(*out));
    if (!PyArg_ParseTuple(addr, "si|II", &host, &port, &flowinfo, &scope_id))
        return -1;
    if (port < 0 || port > 65535) {
        PyErr_SetString(PyExc_ValueError, "port out of range");
        return -1;
    }
    struct sockaddr_in *a4 = (struct sockaddr_in *)out;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((unsigned short)port);
        *len = sizeof(*a4);
        return 0;
    }
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)out;
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((unsigned short)port);
        a6->sin6_flowinfo = htonl(flowinfo);
        a6->sin6_scope_id = scope_id;
        *len = sizeof(*a6);
        return 0;
    }
    PyErr_Format(PyExc_ValueError, "not a numeric IP address: %s", host);
    return -1;
}

/* egress_bind(fd, addr, srtp, protect, keep): write to a dup of socket ``fd`` (to ``addr``, or
 * connected when None), protecting with libsrtp context ``srtp`` (an address) through
 * ``protect`` (the address of srtp_protect); ``keep`` is held while bound. */
static PyObject *Egress_bind(Egress *self, PyObject *args) {
    int fd;
    PyObject *addr, *keep;
    unsigned long long srtp, protect;
    if (!PyArg_ParseTuple(args, "iOKKO", &fd, &addr, &srtp, &protect, &keep))
        return NULL;
    if (srtp == 0 || protect == 0) {
        PyErr_SetString(PyExc_ValueError, "null SRTP context or protect function");
        return NULL;
    }
    struct sockaddr_storage sa;
    socklen_t salen = 0;
    if (addr != Py_None && parse_addr(addr, &sa, &salen) < 0)
        return NULL;
    int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dup_fd < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    egress_release(self);
    self->fd = dup_fd;
    if (salen) {
        memcpy(&self->addr, &sa, sizeof(sa));
    }
    self->addrlen = salen;
    self->srtp = (void *)(uintptr_t)srtp;
    self->protect = (protect_fn)(uintptr_t)protect;
    Py_INCREF(keep);
    self->keep = keep;
    Py_RETURN_NONE;
}

static PyObject *Egress_unbind(Egress *self, PyObject *unused) {
    egress_release(self);
    Py_RETURN_NONE;
}

static PyObject *Egress_get_bound(Egress *self, void *closure) {
    return PyBool_FromLong(self->fd >= 0);
}

static PyObject *Egress_get_prefix(Egress *self, void *closure) {
    return PyBytes_FromStringAndSize((const char *)self->prefix, self->prefix_len);
}

static int Egress_set_prefix(Egress *self, PyObject *value, void *closure) {
    char *data;
    Py_ssize_t n;
    if (value == NULL || PyBytes_AsStringAndSize(value, &data, &n) < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "prefix must be bytes");
        return -1;
    }
    if (n > MAX_PREFIX || n % 4 != 0) {
        PyErr_SetString(PyExc_ValueError, "prefix: at most 64 bytes, a multiple of 4");
        return -1;
    }
    memcpy(self->prefix, data, n);
    self->prefix_len = n;
    return 0;
}

static PyMemberDef Egress_members[] = {
    {"seq_off", T_LONGLONG, offsetof(Egress, seq_off), 0, "added to the incoming sequence number"},
    {"ts_off", T_LONGLONG, offsetof(Egress, ts_off), 0, "added to the incoming timestamp"},
    {"packets", T_LONGLONG, offsetof(Egress, packets), 0, "RTP packets sent (sender reports)"},
    {"octets", T_LONGLONG, offsetof(Egress, octets), 0, "payload octets sent (sender reports)"},
    {"ssrc", T_UINT, offsetof(Egress, ssrc), 0, "outgoing SSRC"},
    {"pt", T_INT, offsetof(Egress, pt), 0, "outgoing payload type"},
    {"max_tid", T_INT, offsetof(Egress, max_tid), 0, "temporal cap"},
    {"rewrite", T_BOOL, offsetof(Egress, rewrite), 0, "VP8 payload rewrite needed (Python path)"},
    {NULL}
};

static PyGetSetDef Egress_getset[] = {
    {"prefix", (getter)Egress_get_prefix, (setter)Egress_set_prefix,
     "the slot's own header-extension bytes", NULL},
    {"egress_bound", (getter)Egress_get_bound, NULL, "bound to a socket for the C path", NULL},
    {NULL}
};

static PyMethodDef Egress_methods[] = {
    {"egress_bind", (PyCFunction)Egress_bind, METH_VARARGS, "bind to a socket and an SRTP context"},
    {"egress_unbind", (PyCFunction)Egress_unbind, METH_NOARGS, "close the socket, drop the context"},
    {NULL}
};

static PyTypeObject EgressType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "confsvc.media._fanout.Egress",
    .tp_basicsize = sizeof(Egress),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "What the C fan-out needs of a slot (base class of forwarder.Slot).",
    .tp_new = Egress_new,
    .tp_init = Egress_init,
    .tp_dealloc = (destructor)Egress_dealloc,
    .tp_members = Egress_members,
    .tp_getset = Egress_getset,
    .tp_methods = Egress_methods,
};

/* fanout(slots, marker, seq, ts, tid, tail, size) -> (sent, errors, slow)
 *
 * ``marker`` is 0x80 or 0; ``tail`` the bytes after the slot's own extension bytes (the shared
 * extension elements and the payload); ``size`` the payload size counted in ``octets``. ``sent``
 * counts packets protected (a failed send is also counted in ``errors``, as a send error of the
 * Python path is); ``slow`` is None or the list of slots this call left to the Python path. */
static PyObject *fanout(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 7 || !PyList_Check(args[0]) || !PyBytes_Check(args[5])) {
        PyErr_SetString(PyExc_TypeError, "fanout(slots: list, marker, seq, ts, tid, tail: bytes, size)");
        return NULL;
    }
    PyObject *slots = args[0];
    long marker = PyLong_AsLong(args[1]);
    unsigned long seq = PyLong_AsUnsignedLong(args[2]);
    unsigned long ts = PyLong_AsUnsignedLong(args[3]);
    long tid = PyLong_AsLong(args[4]);
    long long size = PyLong_AsLongLong(args[6]);
    if (PyErr_Occurred())
        return NULL;
    const char *tail = PyBytes_AS_STRING(args[5]);
    Py_ssize_t tail_len = PyBytes_GET_SIZE(args[5]);

    unsigned char buf[MAX_PACKET + TRAILER_ROOM];
    long sent = 0, errors = 0;
    PyObject *slow = NULL;
    Py_ssize_t n = PyList_GET_SIZE(slots);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(slots, i);
        if (!PyObject_TypeCheck(item, &EgressType)) {
            goto to_python;
        }
        Egress *e = (Egress *)item;
        if (e->fd < 0 || e->rewrite || tid > e->max_tid) {
            goto to_python;
        }
        {
            Py_ssize_t len = 12 + e->prefix_len + tail_len;
            if (len > MAX_PACKET) {
                errors++;
                continue;
            }
            unsigned long s = (seq + (unsigned long long)e->seq_off) & 0xFFFF;
            unsigned long t = (ts + (unsigned long long)e->ts_off) & 0xFFFFFFFFUL;
            unsigned int ssrc = e->ssrc;
            buf[0] = 0x90;
            buf[1] = (unsigned char)((e->pt | marker) & 0xFF);
            buf[2] = (unsigned char)(s >> 8);
            buf[3] = (unsigned char)s;
            buf[4] = (unsigned char)(t >> 24);
            buf[5] = (unsigned char)(t >> 16);
            buf[6] = (unsigned char)(t >> 8);
            buf[7] = (unsigned char)t;
            buf[8] = (unsigned char)(ssrc >> 24);
            buf[9] = (unsigned char)(ssrc >> 16);
            buf[10] = (unsigned char)(ssrc >> 8);
            buf[11] = (unsigned char)ssrc;
            memcpy(buf + 12, e->prefix, e->prefix_len);
            memcpy(buf + 12 + e->prefix_len, tail, tail_len);
            int plen = (int)len;
            if (e->protect(e->srtp, buf, &plen) != 0) {
                errors++;
                continue;
            }
            e->packets++;
            e->octets += size;
            sent++;
            ssize_t r = e->addrlen
                ? sendto(e->fd, buf, plen, MSG_DONTWAIT, (struct sockaddr *)&e->addr, e->addrlen)
                : send(e->fd, buf, plen, MSG_DONTWAIT);
            if (r < 0)
                errors++;
        }
        continue;
    to_python:
        if (slow == NULL && (slow = PyList_New(0)) == NULL)
            return NULL;
        if (PyList_Append(slow, item) < 0) {
            Py_DECREF(slow);
            return NULL;
        }
    }
    if (slow == NULL) {
        return Py_BuildValue("llO", sent, errors, Py_None);
    }
    PyObject *res = Py_BuildValue("llO", sent, errors, slow);
    Py_DECREF(slow);
    return res;
}

static PyMethodDef module_methods[] = {
    {"fanout", (PyCFunction)(void (*)(void))fanout, METH_FASTCALL,
     "fanout(slots, marker, seq, ts, tid, tail, size) -> (sent, errors, slow)"},
    {NULL}
};

static struct PyModuleDef fanout_module = {
    PyModuleDef_HEAD_INIT, "_fanout",
    "The media plane's per-packet fan-out (header rewrite, SRTP protect, send) in C.", -1,
    module_methods,
};

PyMODINIT_FUNC PyInit__fanout(void) {
    if (PyType_Ready(&EgressType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&fanout_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&EgressType);
    if (PyModule_AddObject(m, "Egress", (PyObject *)&EgressType) < 0
        || PyModule_AddIntConstant(m, "MAX_PACKET", MAX_PACKET) < 0
        || PyModule_AddIntConstant(m, "TRAILER_ROOM", TRAILER_ROOM) < 0
        || PyModule_AddIntConstant(m, "MAX_PREFIX", MAX_PREFIX) < 0) {
        Py_DECREF(&EgressType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
