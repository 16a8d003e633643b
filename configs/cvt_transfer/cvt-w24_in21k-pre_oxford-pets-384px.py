_base_ = ['../_base_/models/cvt-w24_ft.py', './_base_/oxford-pets-384px.py']

model = dict(head=dict(num_classes=37))
