"""The blob data plane: whole-blob GET/PUT moved by the kernel (sendfile/splice).

``server`` runs in the API process on its own port, ``client`` is what
:class:`farm.registry.client.RegistryClient` uses to reach it, ``wire`` the HTTP/1.1
heads both speak (h11), ``zerocopy`` the Linux system calls under them.
"""
