"""The Python client of hyperc-server (hyperc.v1.Compressor).

Mirrors the C++ client (client/remote_client.cc): the same upload order (Start, then for each
file a FileHeader and its bytes in chunks, the shard index first and then its shards sorted by
name, then End), the same artifact handling (every artifact file is written to "<final>.part"
and renamed once all of them are complete), a deadline on every call, retries of idempotent
calls (get, list, fetch) on UNAVAILABLE, and the bearer token as "authorization" metadata.

Messages are returned as plain dicts (see `message_to_dict`): a summary, a job, a progress event.
Errors are raised as HypercError(code, message), `code` being the gRPC status code name.
"""

import json
import os
import time

import grpc

from ._stubs import pb2, pb2_grpc

__all__ = ["Client", "HypercError", "compress", "message_to_dict", "upload_files"]

#: Deadline of a whole Compress/Submit/Watch/Fetch call, seconds (as the C++ client: 24 h).
DEFAULT_STREAM_TIMEOUT = 24 * 3600.0
#: Deadline of a unary call, seconds.
DEFAULT_TIMEOUT = 60.0
#: Upload chunk size, bytes.
DEFAULT_CHUNK_BYTES = 1 << 20
_MAX_MESSAGE_BYTES = 8 << 20


class HypercError(Exception):
    """A failed call. `code` is the gRPC status code name ("INVALID_ARGUMENT", "NOT_FOUND",
    "UNAUTHENTICATED", ...), `message` the server's (or the client's) explanation."""

    def __init__(self, code, message):
        super().__init__("%s: %s" % (code, message))
        self.code = code
        self.message = message


def _from_rpc(error):
    code = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else None
    name = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
    return HypercError(name, details if details is not None else str(error))


def message_to_dict(msg):
    """A protobuf message as a dict: every field present (defaults included), 64-bit integers
    as ints, enums by name, repeated fields as lists, maps as dicts."""
    out = {}
    for f in msg.DESCRIPTOR.fields:
        v = getattr(msg, f.name)
        if f.type == f.TYPE_MESSAGE:
            if f.message_type.GetOptions().map_entry:
                vf = f.message_type.fields_by_name["value"]
                if vf.type == vf.TYPE_MESSAGE:
                    out[f.name] = {k: message_to_dict(x) for k, x in v.items()}
                else:
                    out[f.name] = dict(v)
            elif f.label == f.LABEL_REPEATED:
                out[f.name] = [message_to_dict(x) for x in v]
            else:
                out[f.name] = message_to_dict(v)
        elif f.type == f.TYPE_ENUM:
            def name(n, e=f.enum_type):
                ev = e.values_by_number.get(n)
                return ev.name if ev is not None else n
            out[f.name] = [name(x) for x in v] if f.label == f.LABEL_REPEATED else name(v)
        elif f.label == f.LABEL_REPEATED:
            out[f.name] = list(v)
        else:
            out[f.name] = v
    return out


# --- paths, as core/io/shard_index.cc -----------------------------------------------------------

def _is_index(path):
    return path.endswith(".json")


def _dir_name(path):
    slash = path.rfind("/")
    if slash < 0:
        return "."
    if slash == 0:
        return "/"
    return path[:slash]


def _base_name(path):
    return path[path.rfind("/") + 1:]


def _model_name(path):
    return _base_name(_dir_name(path)) if _is_index(path) else _base_name(path)


def upload_files(path):
    """The files of a model in upload order: the .safetensors file itself, or the shard index
    followed by the distinct shards its weight_map names, sorted by name (byte order)."""
    if not _is_index(path):
        return [path]

    def bad(what):
        return HypercError("INVALID_ARGUMENT", "%s: %s" % (path, what))

    try:
        with open(path, "rb") as f:
            text = f.read(256 << 20)
    except OSError as e:
        raise HypercError("NOT_FOUND", "%s: cannot open: %s" % (path, e.strerror)) from None
    try:
        index = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise bad("not JSON: %s" % e) from None
    if not isinstance(index, dict):
        raise bad("index is not a JSON object")
    wm = index.get("weight_map")
    if not isinstance(wm, dict):
        raise bad('missing "weight_map" object')
    if not wm:
        raise bad('"weight_map" is empty')
    shards = set()
    for tensor, shard in wm.items():
        if not isinstance(shard, str):
            raise bad('weight_map["%s"] is not a string' % tensor)
        if shard in ("", ".", "..") or "/" in shard:
            raise bad('weight_map["%s"] = "%s" is not a plain file name' % (tensor, shard))
        shards.add(shard)
    d = _dir_name(path)
    return [path] + [d + "/" + s for s in sorted(shards, key=lambda s: s.encode("utf-8"))]


def _option_text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(_option_text(v) for v in value)
    return str(value)


def _options_proto(codec, skip, codec_options, target_bpw=0.0, overrides=()):
    o = pb2.CompressOptions(codec=codec or "", target_bpw=float(target_bpw or 0.0))
    if isinstance(overrides, str):
        overrides = (overrides,)
    o.overrides.extend(list(overrides or ()))
    for k, v in codec_options.items():
        o.codec_options[str(k).replace("-", "_")] = _option_text(v)
    if isinstance(skip, str):
        skip = (skip,)
    o.skip.extend(list(skip or ()))
    return o


class _Upload:
    """The request stream of Compress and SubmitJob. Every file is opened before the call
    starts, so a missing file fails before anything is sent; a read error during the upload is
    kept in `error` (and the stream ends without End, so the server fails the call too)."""

    def __init__(self, path, model_name, options, chunk_bytes, server_input=False, server_output=""):
        self.error = None
        self._chunk = chunk_bytes
        self._files = []
        self._start = pb2.Start(model_name=model_name if model_name is not None else _model_name(path),
                                options=options, server_path=path if server_input else "",
                                server_output_path=server_output)
        try:
            for p in ([] if server_input else upload_files(path)):
                try:
                    f = open(p, "rb")
                except OSError as e:
                    raise HypercError("NOT_FOUND", "%s: cannot open: %s" % (p, e.strerror)) from None
                self._files.append((p, f, os.fstat(f.fileno()).st_size))
        except BaseException:
            self.close()
            raise
        self.bytes_total = sum(size for _, _, size in self._files)

    def close(self):
        for _, f, _ in self._files:
            f.close()

    def requests(self):
        try:
            yield pb2.CompressRequest(start=self._start)
            for path, f, size in self._files:
                yield pb2.CompressRequest(file=pb2.FileHeader(name=_base_name(path), size=size))
                left = size
                while left > 0:
                    try:
                        data = f.read(min(self._chunk, left))
                    except (OSError, ValueError) as e:
                        self.error = HypercError("UNAVAILABLE", "%s: read failed: %s" % (path, e))
                        return
                    if not data:
                        self.error = HypercError("DATA_LOSS", "%s: shrank while being uploaded" % path)
                        return
                    left -= len(data)
                    yield pb2.CompressRequest(chunk=data)
            yield pb2.CompressRequest(end=pb2.End())
        finally:
            self.close()


class _ArtifactSink:
    """Collects artifact chunks into "<final>.part" files; commit() checks sizes, fsyncs and
    renames them all; abort() removes the parts."""

    def __init__(self, out, directory):
        self._out = out
        self._dir = directory
        self._files = {}  # name -> [final, part, fileobj, size, written]
        self._committed = False

    def write(self, c):
        f = self._files.get(c.file)
        if f is None:
            if c.file in ("", ".", "..") or "/" in c.file:
                raise HypercError("DATA_LOSS", "bad artifact file name %r" % c.file)
            if not self._dir and self._files:
                raise HypercError("DATA_LOSS", "several artifact files for a single-file model")
            final = os.path.join(self._out, c.file) if self._dir else self._out
            part = final + ".part"
            try:
                os.makedirs(os.path.dirname(os.path.abspath(part)), exist_ok=True)
                fh = open(part, "wb")
            except OSError as e:
                raise HypercError("UNAVAILABLE", "%s: %s" % (part, e.strerror)) from None
            f = self._files[c.file] = [final, part, fh, c.file_size, 0]
        if c.offset != f[4]:
            raise HypercError("DATA_LOSS", "artifact %s: chunks out of order" % c.file)
        if f[4] + len(c.data) > f[3]:
            raise HypercError("DATA_LOSS", "artifact %s: more bytes than its size" % c.file)
        try:
            f[2].write(c.data)
        except OSError as e:
            raise HypercError("UNAVAILABLE", "%s: write failed: %s" % (f[1], e.strerror)) from None
        f[4] += len(c.data)

    def commit(self, summary):
        expected = {a.name: a.size for a in summary.files}
        got = {name: f[4] for name, f in self._files.items()}
        if not got:
            raise HypercError("DATA_LOSS", "the server sent no artifact")
        for name, f in self._files.items():
            if f[4] != f[3]:
                raise HypercError("DATA_LOSS", "artifact %s is incomplete (%d of %d bytes)" % (name, f[4], f[3]))
        if expected and expected != got:
            raise HypercError("DATA_LOSS", "artifact files %s differ from the summary's %s" % (got, expected))
        try:
            for f in self._files.values():
                f[2].flush()
                os.fsync(f[2].fileno())
                f[2].close()
            for f in self._files.values():
                os.replace(f[1], f[0])
            _fsync_dir(os.path.dirname(os.path.abspath(next(iter(self._files.values()))[0])))
        except OSError as e:
            raise HypercError("UNAVAILABLE", "writing the artifact: %s" % e) from None
        self._committed = True

    def abort(self):
        if self._committed:
            return
        for f in self._files.values():
            f[2].close()
            try:
                os.unlink(f[1])
            except OSError:
                pass

    def paths(self):
        return [f[0] for f in self._files.values()]


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Client:
    """A connection to hyperc-server.

    server:  "host:port".
    token:   bearer token, sent as "authorization: Bearer <token>" metadata on every call.
    tls_ca:  path of the PEM file of the CA that signed the server's certificate (or the PEM
             bytes); None for plaintext.
    timeout: deadline of unary calls (get, list, cancel, delete), seconds.
    stream_timeout: deadline of a whole compress/submit/watch/fetch call, seconds.
    attempts: tries of an idempotent call (get, list, fetch) while it fails with UNAVAILABLE.
    chunk_bytes: upload chunk size, 1 KiB..4 MiB.
    """

    def __init__(self, server, token=None, tls_ca=None, timeout=DEFAULT_TIMEOUT,
                 stream_timeout=DEFAULT_STREAM_TIMEOUT, attempts=4, chunk_bytes=DEFAULT_CHUNK_BYTES):
        if not server:
            raise HypercError("INVALID_ARGUMENT", "server HOST:PORT is required")
        if attempts < 1:
            raise HypercError("INVALID_ARGUMENT", "attempts must be >= 1")
        if not 1024 <= chunk_bytes <= (4 << 20):
            raise HypercError("INVALID_ARGUMENT", "chunk size must be in [1 KiB, 4 MiB]")
        if timeout <= 0 or stream_timeout <= 0:
            raise HypercError("INVALID_ARGUMENT", "timeouts must be positive")
        self.server = server
        self.timeout = float(timeout)
        self.stream_timeout = float(stream_timeout)
        self.attempts = int(attempts)
        self.chunk_bytes = int(chunk_bytes)
        self._metadata = (("authorization", "Bearer " + token),) if token else ()
        options = [("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
                   ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES)]
        if tls_ca is not None:
            if isinstance(tls_ca, (bytes, bytearray)):
                pem = bytes(tls_ca)
            else:
                try:
                    with open(tls_ca, "rb") as f:
                        pem = f.read(1 << 20)
                except OSError as e:
                    raise HypercError("NOT_FOUND", "%s: cannot open: %s" % (tls_ca, e.strerror)) from None
            creds = grpc.ssl_channel_credentials(root_certificates=pem)
            self._channel = grpc.secure_channel(server, creds, options=options)
        else:
            self._channel = grpc.insecure_channel(server, options=options)
        self._stub = pb2_grpc.CompressorStub(self._channel)

    # -- lifetime --------------------------------------------------------------------------------

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # -- Compress ----------------------------------------------------------------------------

    def compress(self, path, out, codec="rtn", skip=(), progress=None, model_name=None,
                 codec_options=None, target_bpw=0.0, overrides=(), server_input=False,
                 server_output=False, **options):
        """Compresses `path` (a .safetensors file or a model.safetensors.index.json) on the
        server and writes the artifact to `out` (a file; a directory for a sharded model),
        atomically. Codec options are keyword arguments (bits=4, group_size=128, preset="llm")
        or a `codec_options` dict (values are sent as strings; dashes in keys become
        underscores). `skip` is a list of regexes of tensors stored raw; `target_bpw` the
        model-level bits per weight (codec hc2) and `overrides` a list of "REGEX=raw" or
        "REGEX=key=value[,key=value]" rules, as `hyperc compress`. `progress`, if given,
        is called with each Progress event as a dict (tensors_done, tensors_total,
        bytes_received, bytes_total, bytes_done, fraction, eta_seconds, tensor).
        Returns the server's Summary as a dict. The artifact is byte-identical to
        `hyperc compress` in local mode with the same options.

        With `server_input=True`, `path` names a file on the server's filesystem (absolute,
        inside a directory the server allows with --input-root), which the server reads in
        place: nothing is uploaded (Start.server_path). With `server_output=True`, `out` is a
        path on the server (absolute, inside a directory it allows with --output-root), where
        the server writes the artifact: nothing is sent back (Start.server_output_path)."""
        opts = _options_proto(codec, skip, dict(codec_options or {}, **options), target_bpw,
                              overrides)
        upload = _Upload(path, model_name, opts, self.chunk_bytes, server_input,
                         out if server_output else "")
        sink = _ArtifactSink(out, _is_index(path))
        call = self._stub.Compress(upload.requests(), timeout=self.stream_timeout, metadata=self._metadata)
        summary = None
        try:
            rpc_error = None
            try:
                for resp in call:
                    kind = resp.WhichOneof("msg")
                    if kind == "progress":
                        if progress is not None:
                            progress(message_to_dict(resp.progress))
                    elif kind == "artifact":
                        if server_output:
                            raise HypercError("DATA_LOSS", "the server sent an artifact it was asked to write itself")
                        sink.write(resp.artifact)
                    elif kind == "summary":
                        summary = resp.summary
                    if upload.error is not None:
                        call.cancel()
            except grpc.RpcError as e:
                rpc_error = e
            if upload.error is not None:
                raise upload.error
            if rpc_error is not None:
                raise _from_rpc(rpc_error)
            if summary is None:
                raise HypercError("DATA_LOSS", "the server ended the call without a summary")
            if not server_output:
                sink.commit(summary)
        except BaseException:
            call.cancel()
            sink.abort()
            raise
        finally:
            upload.close()
        return message_to_dict(summary)

    # -- jobs --------------------------------------------------------------------------------

    def submit(self, path, codec="rtn", skip=(), model_name=None, codec_options=None,
               target_bpw=0.0, overrides=(), server_input=False, server_output=None, **options):
        """Uploads `path` as a job and returns the job (a dict; it then runs in the background
        on the server). Options and `server_input` as for compress(); `server_output`, if
        given, is the path on the server where the job writes its artifact."""
        opts = _options_proto(codec, skip, dict(codec_options or {}, **options), target_bpw,
                              overrides)
        upload = _Upload(path, model_name, opts, self.chunk_bytes, server_input, server_output or "")
        try:
            job = self._stub.SubmitJob(upload.requests(), timeout=self.stream_timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            if upload.error is not None:
                raise upload.error from None
            raise _from_rpc(e) from None
        finally:
            upload.close()
        if upload.error is not None:
            raise upload.error
        return message_to_dict(job)

    def _unary(self, method, request, retry):
        attempts = self.attempts if retry else 1
        for i in range(attempts):
            try:
                return method(request, timeout=self.timeout, metadata=self._metadata)
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE or i + 1 == attempts:
                    raise _from_rpc(e) from None
            time.sleep(0.2 * (2 ** i))

    def get(self, job_id):
        """The job's current state, as a dict."""
        return message_to_dict(self._unary(self._stub.GetJob, pb2.JobRef(id=job_id), True))

    def list(self):
        """Every job the server knows, newest first, as dicts."""
        resp = self._unary(self._stub.ListJobs, pb2.ListJobsRequest(), True)
        return [message_to_dict(j) for j in resp.jobs]

    def cancel(self, job_id):
        """Cancels a queued or running job; returns the job."""
        return message_to_dict(self._unary(self._stub.CancelJob, pb2.JobRef(id=job_id), False))

    def delete(self, job_id):
        """Deletes a job and its files (cancelling it first if it still runs)."""
        self._unary(self._stub.DeleteJob, pb2.JobRef(id=job_id), False)

    def watch(self, job_id, callback=None):
        """Follows a job until it ends; `callback` sees every state (a dict). Returns the
        final job."""
        stream = self._stub.WatchJob(pb2.JobRef(id=job_id), timeout=self.stream_timeout,
                                     metadata=self._metadata)
        last = None
        try:
            for job in stream:
                last = message_to_dict(job)
                if callback is not None:
                    callback(last)
        except grpc.RpcError as e:
            raise _from_rpc(e) from None
        except BaseException:
            stream.cancel()
            raise
        if last is None:
            raise HypercError("DATA_LOSS", "the watch stream ended without a state")
        return last

    def fetch(self, job_id, out):
        """Downloads a succeeded job's artifact to `out` (a file; a directory when the artifact
        has several files). A partial download left at "<file>.part" resumes from its size.
        Returns the paths written."""
        job = self._unary(self._stub.GetJob, pb2.JobRef(id=job_id), True)
        if job.state != pb2.Job.SUCCEEDED:
            raise HypercError("FAILED_PRECONDITION",
                              "job %s is %s" % (job_id, pb2.Job.State.Name(job.state)))
        files = list(job.summary.files)
        if not files:
            raise HypercError("DATA_LOSS", "job %s has no artifact files" % job_id)
        if len(files) == 1:
            self._fetch_file(job_id, files[0].name, files[0].size, out)
            return [out]
        os.makedirs(out, exist_ok=True)
        paths = []
        for f in files:
            if f.name in ("", ".", "..") or "/" in f.name:
                raise HypercError("DATA_LOSS", "bad artifact file name %r" % f.name)
            p = os.path.join(out, f.name)
            self._fetch_file(job_id, f.name, f.size, p)
            paths.append(p)
        _fsync_dir(out)
        return paths

    def _fetch_file(self, job_id, name, size, path):
        part = path + ".part"
        d = os.path.dirname(os.path.abspath(part))
        os.makedirs(d, exist_ok=True)
        for attempt in range(self.attempts):
            try:
                have = os.path.getsize(part)
            except OSError:
                have = 0
            if have > size:  # not a prefix of this file
                have = 0
            try:
                with open(part, "r+b" if os.path.exists(part) else "wb") as fh:
                    fh.truncate(have)
                    fh.seek(have)
                    pos = have
                    try:
                        if pos < size:
                            req = pb2.FetchArtifactRequest(id=job_id, file=name, offset=pos)
                            for c in self._stub.FetchArtifact(req, timeout=self.stream_timeout,
                                                              metadata=self._metadata):
                                if c.offset != pos:
                                    raise HypercError("DATA_LOSS", "artifact %s: chunks out of order" % name)
                                fh.write(c.data)
                                pos += len(c.data)
                    finally:
                        fh.flush()
                        os.fsync(fh.fileno())
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.UNAVAILABLE and attempt + 1 < self.attempts:
                    time.sleep(0.2 * (2 ** attempt))
                    continue
                raise _from_rpc(e) from None
            except OSError as e:
                raise HypercError("UNAVAILABLE", "%s: %s" % (part, e)) from None
            break
        got = os.path.getsize(part)
        if got != size:
            raise HypercError("DATA_LOSS", "artifact %s is incomplete (%d of %d bytes)" % (name, got, size))
        os.replace(part, path)


def compress(path, out, server=None, token=None, tls_ca=None, timeout=DEFAULT_TIMEOUT,
             stream_timeout=DEFAULT_STREAM_TIMEOUT, **options):
    """One-call convenience: Client(server, ...).compress(path, out, **options). `server`
    defaults to $HYPERC_SERVER."""
    server = server or os.environ.get("HYPERC_SERVER")
    with Client(server, token=token, tls_ca=tls_ca, timeout=timeout, stream_timeout=stream_timeout) as c:
        return c.compress(path, out, **options)
