/* bcryptprimitives.dll for Wine prefixes whose Wine lacks ProcessPrng (Wine 8): Rust's standard
 * library asks it for random bytes at start-up and exits without them. ProcessPrng fills the
 * buffer from RtlGenRandom (advapi32!SystemFunction036), which every Wine has. Built by .ci/wine
 * with the mingw toolchain. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}

BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID reserved)
{
    (void)instance;
    (void)reason;
    (void)reserved;
    return TRUE;
}
