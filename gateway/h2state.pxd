# gateway/h2state.py is compiled by Cython as it is (see setup.py): its classes stay Python
# classes (h2 subclasses, or instances that code outside the compiled core extends), and
# the gain is C calls and locals instead of bytecode on the per-request path.
