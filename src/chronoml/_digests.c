/* SHA-256 of many short messages in one call.
 *
 * The evidence entry of a 1000-row request is about 4,000 SHA-256 calls on
 * messages under 300 bytes. From Python each costs a hasher object, OpenSSL's
 * per-call set-up and a bytes result; here one digest context is reused for
 * every message, the digests are written end to end into one bytes object,
 * and the GIL is released while the rows are hashed. The bytes are exactly
 * hashlib.sha256's: chronoml/digests.py falls back to hashlib when this
 * module is not built, and a test compares the two.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#define DIGEST_SIZE 32

static const EVP_MD *sha256_md = NULL;

/* hash `n` messages: message i is `prefix` then `width` bytes at data + i * stride */
static int
hash_rows(EVP_MD_CTX *ctx, const unsigned char *prefix, size_t prefix_len,
          const unsigned char *data, size_t width, size_t stride, Py_ssize_t n,
          unsigned char *out)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!EVP_DigestInit_ex(ctx, sha256_md, NULL)
            || (prefix_len && !EVP_DigestUpdate(ctx, prefix, prefix_len))
            || !EVP_DigestUpdate(ctx, data + (size_t)i * stride, width)
            || !EVP_DigestFinal_ex(ctx, out + (size_t)i * DIGEST_SIZE, NULL)) {
            return 0;
        }
    }
    return 1;
}

static PyObject *
digests_rows(PyObject *self, PyObject *args)
{
    Py_buffer data, prefix = {0};
    Py_ssize_t width;
    PyObject *result = NULL;
    if (!PyArg_ParseTuple(args, "y*n|y*:rows", &data, &width, &prefix)) {
        return NULL;
    }
    if (width <= 0 || data.len % width) {
        PyErr_SetString(PyExc_ValueError, "the data is not whole rows of the given width");
        goto done;
    }
    Py_ssize_t n = data.len / width;
    result = PyBytes_FromStringAndSize(NULL, n * DIGEST_SIZE);
    if (result == NULL) {
        goto done;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        Py_CLEAR(result);
        PyErr_NoMemory();
        goto done;
    }
    int ok;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    Py_BEGIN_ALLOW_THREADS
    ok = hash_rows(ctx, prefix.buf, (size_t)prefix.len, data.buf, (size_t)width,
                   (size_t)width, n, out);
    Py_END_ALLOW_THREADS
    EVP_MD_CTX_free(ctx);
    if (!ok) {
        Py_CLEAR(result);
        ERR_clear_error();
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL's SHA-256 failed");
    }
done:
    PyBuffer_Release(&data);
    if (prefix.obj != NULL) {
        PyBuffer_Release(&prefix);
    }
    return result;
}

static PyObject *
digests_each(PyObject *self, PyObject *arg)
{
    PyObject *seq = PySequence_Fast(arg, "expected a sequence of bytes");
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyBytes_Check(items[i])) {
            PyErr_Format(PyExc_TypeError, "item %zd is %.100s, not bytes", i,
                         Py_TYPE(items[i])->tp_name);
            Py_DECREF(seq);
            return NULL;
        }
    }
    PyObject *result = PyBytes_FromStringAndSize(NULL, n * DIGEST_SIZE);
    EVP_MD_CTX *ctx = result == NULL ? NULL : EVP_MD_CTX_new();
    if (ctx == NULL) {
        Py_XDECREF(result);
        Py_DECREF(seq);
        return result == NULL ? NULL : PyErr_NoMemory();
    }
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    int ok = 1;
    /* the items are immutable bytes the sequence holds; the GIL stays held, as a
       list could be changed by another thread while it was released */
    for (Py_ssize_t i = 0; ok && i < n; i++) {
        ok = hash_rows(ctx, NULL, 0, (const unsigned char *)PyBytes_AS_STRING(items[i]),
                       (size_t)PyBytes_GET_SIZE(items[i]), 0, 1, out + (size_t)i * DIGEST_SIZE);
    }
    EVP_MD_CTX_free(ctx);
    Py_DECREF(seq);
    if (!ok) {
        Py_DECREF(result);
        ERR_clear_error();
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL's SHA-256 failed");
        return NULL;
    }
    return result;
}

static PyMethodDef digests_methods[] = {
    {"rows", digests_rows, METH_VARARGS,
     "rows(data, width, prefix=b'') -> bytes\n\n"
     "SHA-256 of prefix + each width-byte row of data, the digests end to end."},
    {"each", digests_each, METH_O,
     "each(messages) -> bytes\n\nSHA-256 of each bytes object, the digests end to end."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef digests_module = {
    PyModuleDef_HEAD_INIT, "_digests", "SHA-256 of many short messages in one call.", -1,
    digests_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__digests(void)
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    /* fetched once: EVP_sha256() would look the implementation up on every init */
    EVP_MD *md = EVP_MD_fetch(NULL, "SHA256", NULL);
    sha256_md = md;
#else
    sha256_md = EVP_sha256();
#endif
    if (sha256_md == NULL) {
        ERR_clear_error();
        PyErr_SetString(PyExc_ImportError, "OpenSSL has no SHA-256");
        return NULL;
    }
    PyObject *module = PyModule_Create(&digests_module);
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    if (module == NULL) {
        EVP_MD_free(md);
        sha256_md = NULL;
    }
#endif
    return module;
}
