_base_ = ['../_base_/models/cvt-13_ft.py', './_base_/flowers102-384px.py']

model = dict(head=dict(num_classes=102))
