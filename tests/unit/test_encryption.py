"""AdImageDataEncryptor / AdImageDataDecryptor: exact round trips, and every failure rejected."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pvaccess as pva
import pytest

pytest.importorskip("Crypto")

from Crypto.PublicKey import RSA  # noqa: E402

from pvhpc.errors import UsageError  # noqa: E402
from pvhpc.loading import create_processor, load_processor_class  # noqa: E402
from pvhpc.processors import AdImageDataDecryptor, AdImageDataEncryptor  # noqa: E402
from pvhpc.processors.ad_image import get_image, make_frame  # noqa: E402
from pvhpc.processors.encryption import (  # noqa: E402
    ENVELOPE_FORMAT,
    EncryptionError,
    deserialize_pv_object,
    serialize_pv_object,
)


class Published:
    """Stands in for the runtime's data publisher: records what was published."""

    def __init__(self) -> None:
        self.objects: list = []

    def updateOutputChannel(self, pvObject) -> None:
        self.objects.append(pvObject)


@pytest.fixture(scope="module")
def rsa_key():
    return RSA.generate(2048)


@pytest.fixture
def key_file(tmp_path, rsa_key):
    path = tmp_path / "id_rsa"
    path.write_bytes(rsa_key.export_key("PEM", pkcs=1))
    return str(path)


@pytest.fixture
def other_key_file(tmp_path):
    path = tmp_path / "other_rsa"
    path.write_bytes(RSA.generate(1024).export_key("PEM", pkcs=8))
    return str(path)


def attach(processor):
    processor.dataPublisher = Published()
    processor.objectIdField = "uniqueId"
    processor.start()
    return processor.dataPublisher


def make_pair(key_file, sign=False, verify=False, **extra):
    enc = AdImageDataEncryptor({"privateKeyFilePath": key_file, "sign": int(sign), **extra})
    dec = AdImageDataDecryptor({"privateKeyFilePath": key_file, "verify": int(verify)})
    return enc, attach(enc), dec, attach(dec)


def variant_forms(pv) -> list[str]:
    """How each variant's content is laid out (a scalar itself, or a structure)."""
    lines = str(pv).split("\n")
    return [lines[i + 1].strip() for i, line in enumerate(lines) if line.strip() == "any value"]


def assert_identical(a, b) -> None:
    """Same structure, type ids and values, pixels compared by dtype and bytes."""
    ta, va, *ids_a = a.__getinitargs__()
    tb, vb, *ids_b = b.__getinitargs__()
    assert (ta, ids_a) == (tb, ids_b)
    assert str(a).split("\n")[0] == str(b).split("\n")[0]  # the type id
    assert type(a) is type(b)

    def same(x, y, path="") -> None:
        if isinstance(x, np.ndarray):
            assert isinstance(y, np.ndarray), path
            assert x.dtype == y.dtype and x.shape == y.shape, path
            assert x.tobytes() == y.tobytes(), path
        elif isinstance(x, dict):
            assert isinstance(y, dict) and x.keys() == y.keys(), path
            for k in x:
                same(x[k], y[k], f"{path}.{k}")
        elif isinstance(x, (list, tuple)):
            assert type(x) is type(y) and len(x) == len(y), path
            for i, (p, q) in enumerate(zip(x, y, strict=True)):
                same(p, q, f"{path}[{i}]")
        else:
            assert x == y or (x != x and y != y), f"{path}: {x!r} != {y!r}"

    same(va, vb)
    assert variant_forms(a) == variant_forms(b)


def sample_frame(dtype, unique_id=7, color=False):
    rng = np.random.default_rng(unique_id)
    shape = (24, 32, 3) if color else (24, 32)
    if np.dtype(dtype).kind == "f":
        image = rng.standard_normal(shape).astype(dtype)
        image.flat[0] = np.nan
        image.flat[1] = -np.inf
    else:
        info = np.iinfo(dtype)
        image = rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
    frame = make_frame(
        image,
        unique_id,
        time_stamp=(1_700_000_000, 123_456_789),
        data_time_stamp=(1_700_000_000, 111),
        attributes=[
            pva.NtAttribute("temperature", pva.PvDouble(21.25)),
            pva.NtAttribute("label", pva.PvString("sample A")),
            pva.NtAttribute("counts", pva.PvULong(2**63 + 5)),
        ],
    )
    frame["descriptor"] = "test frame"
    frame["alarm"] = {"severity": 1, "status": 2, "message": "minor"}
    return standard_attributes(frame), image


def standard_attributes(frame):
    """Attributes as areaDetector sends them: each variant holds the scalar itself."""
    attributes = []
    for fields in frame["attribute"]:
        value, value_type = fields["value"]
        attribute = pva.NtAttribute(fields["name"], pva.PvObject(value_type, value))
        for key in ("tags", "descriptor", "alarm", "timeStamp", "sourceType", "source"):
            attribute[key] = fields[key]
        attributes.append(attribute)
    frame["attribute"] = attributes
    assert not any(form.split()[1:2] == ["value"] for form in variant_forms(frame))
    return frame


@pytest.mark.parametrize(
    "dtype",
    [
        np.uint8,
        np.int8,
        np.uint16,
        np.int16,
        np.uint32,
        np.int32,
        np.uint64,
        np.int64,
        np.float32,
        np.float64,
    ],
)
def test_round_trip_is_exact_for_every_dtype(key_file, dtype):
    enc, enc_out, dec, dec_out = make_pair(key_file)
    frame, image = sample_frame(dtype)
    envelope = enc.process(frame)
    assert enc_out.objects == [envelope]
    assert envelope["objectId"] == 7
    assert envelope["format"] == ENVELOPE_FORMAT
    # Nothing of the pixels is visible in the envelope.
    assert image.tobytes()[:64] not in envelope["payload"].tobytes()

    restored = dec.process(envelope)
    assert dec_out.objects == [restored]
    assert_identical(frame, restored)
    assert np.array_equal(get_image(restored), image, equal_nan=image.dtype.kind == "f")
    assert get_image(restored).dtype == image.dtype
    assert enc.getStats()["nEncrypted"] == 1
    assert dec.getStats()["nDecrypted"] == 1
    assert dec.getStats()["nFailed"] == 0


def test_round_trip_of_rgb_frame_keeps_colour_mode_and_layout(key_file):
    enc, _, dec, _ = make_pair(key_file)
    for mode in (2, 3, 4):
        rng = np.random.default_rng(mode)
        image = rng.integers(0, 255, size=(10, 14, 3), dtype=np.uint8)
        frame = standard_attributes(make_frame(image, mode, color_mode=mode))
        restored = dec.process(enc.process(frame))
        assert_identical(frame, restored)
        assert np.array_equal(get_image(restored), image)


def test_signed_frames_are_verified(key_file):
    enc, _, dec, dec_out = make_pair(key_file, sign=True, verify=True)
    frames = [sample_frame(np.uint16, unique_id=i)[0] for i in range(1, 4)]
    for frame in frames:
        dec.process(enc.process(frame))
    for frame, restored in zip(frames, dec_out.objects, strict=True):
        assert_identical(frame, restored)
    enc_stats, dec_stats = enc.getStats(), dec.getStats()
    assert (enc_stats["nEncrypted"], enc_stats["nSigned"]) == (3, 3)
    assert (dec_stats["nDecrypted"], dec_stats["nVerified"], dec_stats["nFailed"]) == (3, 3, 0)
    assert dec_stats["decryptedRate"] > 0


def flip(envelope, field: str, index: int = 0):
    data = envelope[field].copy()
    data[index] ^= 0x01
    envelope[field] = data
    return envelope


@pytest.mark.parametrize(
    "field,index", [("payload", 0), ("payload", -1), ("tag", 3), ("nonce", 0), ("wrappedKey", 5)]
)
def test_tampered_envelope_is_rejected_and_not_published(key_file, field, index):
    enc, _, dec, dec_out = make_pair(key_file)
    envelope = flip(enc.process(sample_frame(np.uint8)[0]), field, index)
    with pytest.raises(EncryptionError):
        dec.process(envelope)
    assert dec_out.objects == []
    assert dec.getStats()["nFailed"] == 1
    assert dec.getStats()["nDecrypted"] == 0


def test_changed_object_id_is_rejected(key_file):
    enc, _, dec, dec_out = make_pair(key_file)
    envelope = enc.process(sample_frame(np.uint8, unique_id=5)[0])
    envelope["objectId"] = 6
    with pytest.raises(EncryptionError, match="authentication failed"):
        dec.process(envelope)
    assert dec_out.objects == []


def test_bad_signature_is_rejected(key_file):
    enc, _, dec, dec_out = make_pair(key_file, sign=True, verify=True)
    envelope = flip(enc.process(sample_frame(np.uint8)[0]), "signature", 10)
    with pytest.raises(EncryptionError, match="signature verification failed"):
        dec.process(envelope)
    assert dec_out.objects == []
    assert dec.getStats()["nFailed"] == 1


def test_verify_rejects_unsigned_frames(key_file):
    enc, _, dec, dec_out = make_pair(key_file, sign=False, verify=True)
    with pytest.raises(EncryptionError, match="not signed"):
        dec.process(enc.process(sample_frame(np.uint8)[0]))
    assert dec_out.objects == []


def test_wrong_key_is_rejected_with_a_clear_message(key_file, other_key_file):
    enc = AdImageDataEncryptor({"privateKeyFilePath": key_file})
    attach(enc)
    dec = AdImageDataDecryptor({"privateKeyFilePath": other_key_file})
    dec_out = attach(dec)
    with pytest.raises(EncryptionError, match="encrypted for RSA key"):
        dec.process(enc.process(sample_frame(np.uint8)[0]))
    assert dec_out.objects == []
    assert dec.getStats()["nFailed"] == 1


def test_wrong_key_with_forged_fingerprint_still_fails(key_file, other_key_file):
    enc = AdImageDataEncryptor({"privateKeyFilePath": key_file})
    attach(enc)
    dec = AdImageDataDecryptor({"privateKeyFilePath": other_key_file})
    dec_out = attach(dec)
    envelope = enc.process(sample_frame(np.uint8)[0])
    envelope["keyFingerprint"] = dec._fingerprint
    with pytest.raises(EncryptionError):
        dec.process(envelope)
    assert dec_out.objects == []


def test_not_an_envelope_is_rejected(key_file):
    _, _, dec, dec_out = make_pair(key_file)
    with pytest.raises(EncryptionError, match="not a pvhpc-envelope"):
        dec.process(sample_frame(np.uint8)[0])
    assert dec_out.objects == []


def test_missing_key_file_is_a_clear_error(tmp_path):
    missing = tmp_path / "nope" / "id_rsa"
    with pytest.raises(ValueError, match=f"privateKeyFilePath {missing}: cannot read"):
        AdImageDataEncryptor({"privateKeyFilePath": str(missing)})
    with pytest.raises(ValueError, match="privateKeyFilePath is required"):
        AdImageDataDecryptor({})
    # As the consumer command reports it: one line naming the file, no traceback.
    cls = load_processor_class(None, "pvapy.hpc.adImageDataEncryptor.AdImageDataEncryptor")
    with pytest.raises(UsageError, match="cannot read"):
        create_processor(cls, {"privateKeyFilePath": str(missing)})


def test_a_flag_that_is_not_true_or_false_is_a_clear_error(key_file):
    """``sign: "ture"`` used to mean no signing, silently."""
    cls = load_processor_class(None, "pvapy.hpc.adImageDataEncryptor.AdImageDataEncryptor")
    with pytest.raises(UsageError, match="sign 'ture': give true or false"):
        create_processor(cls, {"privateKeyFilePath": str(key_file), "sign": "ture"})
    assert create_processor(cls, {"privateKeyFilePath": str(key_file), "sign": "1"}).sign


def test_unusable_key_files_are_clear_errors(tmp_path, rsa_key):
    public = tmp_path / "id_rsa.pub"
    public.write_bytes(rsa_key.public_key().export_key("PEM"))
    with pytest.raises(ValueError, match="public key, not a private key"):
        AdImageDataEncryptor({"privateKeyFilePath": str(public)})
    locked = tmp_path / "locked"
    locked.write_bytes(
        rsa_key.export_key(
            "PEM", pkcs=8, passphrase="secret", protection="PBKDF2WithHMAC-SHA1AndAES128-CBC"
        )
    )
    with pytest.raises(ValueError, match="passphrase"):
        AdImageDataDecryptor({"privateKeyFilePath": str(locked)})
    garbage = tmp_path / "garbage"
    garbage.write_text("not a key\n")
    with pytest.raises(ValueError, match="not an RSA private key"):
        AdImageDataEncryptor({"privateKeyFilePath": str(garbage)})


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")
@pytest.mark.parametrize("fmt", [None, "PEM", "PKCS8"])
def test_ssh_keygen_keys_are_accepted(tmp_path, fmt):
    path = tmp_path / "id_rsa"
    cmd = ["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(path)]
    if fmt:
        cmd += ["-m", fmt]
    subprocess.run(cmd, check=True, timeout=60)
    enc, _, dec, _ = make_pair(str(path), sign=True, verify=True)
    frame = sample_frame(np.int16)[0]
    assert_identical(frame, dec.process(enc.process(frame)))


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")
def test_non_rsa_ssh_key_is_a_clear_error(tmp_path):
    path = tmp_path / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, timeout=60
    )
    with pytest.raises(ValueError, match="not an RSA private key"):
        AdImageDataEncryptor({"privateKeyFilePath": str(path)})


def test_fresh_key_per_frame_or_per_period(key_file):
    enc, _, dec, _ = make_pair(key_file)
    frames = [sample_frame(np.uint8, unique_id=i)[0] for i in range(1, 4)]
    envelopes = [enc.process(f) for f in frames]
    assert len({e["wrappedKey"].tobytes() for e in envelopes}) == 3
    assert enc.getStats()["nKeys"] == 3
    for frame, envelope in zip(frames, envelopes, strict=True):
        assert_identical(frame, dec.process(envelope))

    enc.configure({"keyPeriod": 3600})
    envelopes = [enc.process(f) for f in frames]
    assert len({e["wrappedKey"].tobytes() for e in envelopes}) == 1
    assert len({e["nonce"].tobytes() for e in envelopes}) == 3
    for frame, envelope in zip(frames, envelopes, strict=True):
        assert_identical(frame, dec.process(envelope))
    # One RSA unwrap per distinct key: 3 per-frame keys, then 1 shared key.
    assert dec.getStats()["nKeys"] == 4
    assert enc.getStats()["nKeys"] == 4


def test_envelopes_carry_strictly_increasing_timestamps(key_file):
    enc, _, _, _ = make_pair(key_file)
    frame = sample_frame(np.uint8)[0]
    stamps = []
    for _ in range(20):
        ts = enc.process(frame)["timeStamp"]
        stamps.append(ts["secondsPastEpoch"] * 10**9 + ts["nanoseconds"])
    assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False))


def test_sign_can_be_switched_at_runtime(key_file):
    enc, _, _, _ = make_pair(key_file)
    frame = sample_frame(np.uint8)[0]
    assert len(enc.process(frame)["signature"]) == 0
    enc.configure({"sign": 1})
    assert len(enc.process(frame)["signature"]) > 0
    assert enc.getStats()["nSigned"] == 1


def test_output_types(key_file):
    enc, _, dec, _ = make_pair(key_file)
    frame = sample_frame(np.float32)[0]
    envelope_type = enc.getOutputPvObjectType(frame)
    envelope = enc.process(frame)
    assert envelope_type.getStructureDict() == envelope.getStructureDict()
    decrypted_type = dec.getOutputPvObjectType(envelope)
    assert decrypted_type.getStructureDict() == frame.getStructureDict()
    assert isinstance(dec.getOutputPvObjectType(None), pva.NtNdArray)


def test_stats_types_cover_stats(key_file):
    enc, _, dec, _ = make_pair(key_file)
    for p in (enc, dec):
        assert set(p.getStats()) == set(p.getStatsPvaTypes())
        p.resetStats()
        assert all(v == 0 for v in p.getStats().values() if isinstance(v, int))


def test_attributes_come_back_in_standard_form(key_file):
    # pvaccess can also hold an attribute's scalar inside a {value} structure; the
    # decryptor restores the values, in the form areaDetector uses.
    enc, _, dec, _ = make_pair(key_file)
    frame = make_frame(np.zeros((4, 6), np.uint8), 3, attributes={"x": 1.5, "n": 7})
    restored = dec.process(enc.process(frame))
    assert restored["attribute"] == frame["attribute"]
    assert variant_forms(restored) == ["int  0", "double  1.5", "int  7"]


def test_frame_received_from_a_channel_comes_back_as_ntndarray(key_file):
    # A monitor hands out plain PvObjects, whose type ids pvaccess does not report.
    enc, _, dec, _ = make_pair(key_file)
    frame, image = sample_frame(np.uint16)
    type_dict, value_dict, *_ = frame.__getinitargs__()
    received = pva.PvObject(type_dict, value_dict)
    assert len(received.__getinitargs__()) == 2
    restored = dec.process(enc.process(received))
    assert isinstance(restored, pva.NtNdArray)
    assert_identical(frame, restored)


def test_any_pv_object_round_trips():
    # Structure and values; pvaccess does not report type ids of other objects than
    # NTNDArrays, so those are not carried.
    pv = pva.PvObject(
        {
            "id": pva.UINT,
            "name": pva.STRING,
            "values": [pva.FLOAT],
            "tags": [pva.STRING],
            "nested": {"a": pva.SHORT, "b": [pva.ULONG]},
            "choice": ({"x": pva.INT, "y": pva.DOUBLE},),
            "anything": (),
            "items": [{"k": pva.STRING, "v": pva.DOUBLE}],
        },
        {
            "id": 4_000_000_000,
            "name": "héllo",
            "values": [1.5, -2.25],
            "tags": ["a", "b"],
            "nested": {"a": -3, "b": [2**64 - 1, 0]},
            "choice": {"y": 2.5},
            "anything": pva.PvInt(9),
            "items": [{"k": "one", "v": 1.0}, {"k": "two", "v": 2.0}],
        },
    )
    plaintext = b"".join(bytes(memoryview(p).cast("B")) for p in serialize_pv_object(pv))
    assert_identical(pv, deserialize_pv_object(plaintext))
