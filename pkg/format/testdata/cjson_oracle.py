# SPDX-License-Identifier: Apache-2.0
# Oracle for TestCJSONOracle: parses each hex-encoded input line with the
# system libcjson exactly as mosquitto_sub %J does (cJSON_ParseWithOpts with
# require_null_terminated, end must equal payload+len), wraps the value as
# member "payload" of an object and prints compact and formatted output as
# hex, or ERR.
import ctypes, sys
lib = ctypes.CDLL("libcjson.so.1")
lib.cJSON_ParseWithOpts.restype = ctypes.c_void_p
lib.cJSON_ParseWithOpts.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int]
lib.cJSON_CreateObject.restype = ctypes.c_void_p
lib.cJSON_AddItemToObject.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
lib.cJSON_Print.restype = ctypes.c_void_p
lib.cJSON_Print.argtypes = [ctypes.c_void_p]
lib.cJSON_PrintUnformatted.restype = ctypes.c_void_p
lib.cJSON_PrintUnformatted.argtypes = [ctypes.c_void_p]
lib.cJSON_Delete.argtypes = [ctypes.c_void_p]
lib.cJSON_free.argtypes = [ctypes.c_void_p]
for line in sys.stdin:
    data = bytes.fromhex(line.strip())
    buf = ctypes.create_string_buffer(data, len(data)+1)
    end = ctypes.c_char_p()
    item = lib.cJSON_ParseWithOpts(buf, ctypes.byref(end), 1)
    endoff = ctypes.cast(end, ctypes.c_void_p).value - ctypes.addressof(buf) if end else -1
    if not item or endoff != len(data):
        if item: lib.cJSON_Delete(item)
        print("ERR"); continue
    root = lib.cJSON_CreateObject()
    lib.cJSON_AddItemToObject(root, b"payload", item)
    outs = []
    for f in (lib.cJSON_PrintUnformatted, lib.cJSON_Print):
        p = f(root)
        outs.append(ctypes.string_at(p).hex() or "-")
        lib.cJSON_free(p)
    lib.cJSON_Delete(root)
    print(outs[0], outs[1])
